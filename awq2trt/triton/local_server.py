"""Start a ``tritonserver`` on a model repository, on free localhost ports, and stop it cleanly.

Used by the server tests and ``scripts/bench_triton.py``: the server listens on 127.0.0.1 only (HTTP and gRPC;
metrics off), is ready when ``/v2/health/ready`` answers 200, and stops on SIGTERM (a kill after a grace period).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from awq2trt.errors import Awq2TrtError
from awq2trt.triton.server_env import ServerEnv


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalServer:
    def __init__(
        self, env: ServerEnv, repository: Path, log: Path, http_port: int = 0, grpc_port: int = 0, log_verbose: int = 0
    ) -> None:
        """Ports 0: free ones, picked now.  *log_verbose* is tritonserver's ``--log-verbose`` level: at 1 the log
        traces each request's state (``[request id: ID] Setting state from INITIALIZED to PENDING`` once it is in
        the model's queue), which is how a test knows a request has reached the server."""
        self.env, self.repository, self.log, self.log_verbose = env, repository, log, log_verbose
        self.http_port, self.grpc_port = http_port or free_port(), grpc_port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, timeout: float = 120) -> LocalServer:
        argv = [
            str(self.env.tritonserver),
            f"--model-repository={self.repository}",
            f"--backend-directory={self.env.backends}",
            "--http-address=127.0.0.1",
            f"--http-port={self.http_port}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.grpc_port}",
            "--allow-metrics=false",
            "--exit-timeout-secs=10",
        ]
        if self.log_verbose:
            argv.append(f"--log-verbose={self.log_verbose}")
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=self.env.environment(), start_new_session=True
            )
        try:
            return self._wait_ready(timeout)
        except BaseException:  # not ready, or Ctrl-C while waiting: no server is left running
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> LocalServer:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise Awq2TrtError(
                    self.log, detail=f"tritonserver exited with {self.process.returncode}: {self.tail()}"
                )
            try:
                with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except OSError:  # not listening yet, or not ready (HTTP 400)
                pass
            time.sleep(0.2)
        raise Awq2TrtError(self.log, detail=f"tritonserver not ready after {timeout:.0f} s: {self.tail()}")

    def wait(self) -> int:
        """Block until the server exits by itself; its exit code."""
        assert self.process is not None
        return self.process.wait()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: the stub processes go too
            process.wait(timeout=10)

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
