"""`awq2trt serve`: a generate repository in a temporary folder, served by a local tritonserver until Ctrl-C."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from awq2trt.cli import options
from awq2trt.errors import Awq2TrtError


def add_parser(subparsers: options.Subparsers) -> None:
    p = options.new_command(
        subparsers,
        "serve",
        help="serve an exported folder with a local Triton server (Ctrl-C stops it)",
        description="Write a generate repository (see `awq2trt triton`) to a temporary folder and serve it with"
        " the tritonserver of the nvidia-pytriton wheel on 127.0.0.1, in a venv of its own built once under the"
        " cache folder (pip, about a minute). Prints the URLs; Ctrl-C or SIGTERM stops it and removes the folder.",
    )
    p.add_argument("model_dir", metavar="MODEL_DIR", help="exported folder (awq2trt export)")
    p.add_argument("--name", default=None, help="model name (default: MODEL_DIR's folder name)")
    p.add_argument("--max-batch", type=options.positive_int, default=8, help="requests decoded together (default 8)")
    p.add_argument("--max-context", type=options.positive_int, default=None, help="as for `awq2trt triton`")
    p.add_argument("--max-tokens", type=options.positive_int, default=None, help="as for `awq2trt triton`")
    p.add_argument("--threads", type=options.positive_int, default=None, help="as for `awq2trt triton`")
    p.add_argument("--kernels", default=None, metavar="PATH", help="as for `awq2trt triton`")
    p.add_argument("--http-port", type=options.non_negative_int, default=0, help="HTTP port (default: a free one)")
    p.add_argument("--grpc-port", type=options.non_negative_int, default=0, help="gRPC port (default: a free one)")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from awq2trt.models import cache_dir
    from awq2trt.triton.local_server import LocalServer
    from awq2trt.triton.repository import DEFAULT_MAX_TOKENS, write_repository
    from awq2trt.triton.server_env import ensure_server_env

    folder = Path(tempfile.mkdtemp(prefix="awq2trt-serve-"))
    try:
        result = write_repository(
            args.model_dir,
            folder / "repo",
            name=args.name,
            max_batch=args.max_batch,
            max_tokens=args.max_tokens or DEFAULT_MAX_TOKENS,
            max_context=args.max_context,
            threads=args.threads,
            kernels=args.kernels,
        )
        for warning in result.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print("preparing the server environment (built once, then reused)", file=sys.stderr, flush=True)
        env = ensure_server_env(cache_dir(args.cache_dir))
        server = LocalServer(env, result.repository, folder / "tritonserver.log", args.http_port, args.grpc_port)
        with server:
            stream, infer = result.models
            print(f"repository {result.repository}", flush=True)
            routes = f"POST /v2/models/{infer}/generate, /v2/models/{stream}/generate_stream"
            print(f"HTTP  http://{server.http_url}  ({routes})")
            print(f"gRPC  {server.grpc_url}  (models {stream}: streaming, {infer}: one answer)")
            print("Ctrl-C stops the server", flush=True)
            try:
                code = server.wait()
            except KeyboardInterrupt:
                print("stopping", file=sys.stderr, flush=True)
                return 0
            raise Awq2TrtError(server.log, detail=f"tritonserver exited with {code}: {server.tail()}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
