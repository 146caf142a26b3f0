"""`awq2trt triton`: every config parses with Triton's own schema, the repository layouts, one-line errors, and
the request handling the Python-backend model runs (driven directly here, compared with ``OrtModel``).

The tests that start a real ``tritonserver`` on a written repository are in ``tests/test_triton_server.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tritonclient.grpc import model_config_pb2 as pb2  # scripts/venv-run installs it (the dev environment)

from awq2trt.cli import main
from awq2trt.errors import Awq2TrtError
from awq2trt.runtime import OrtModel
from awq2trt.sidecar import SIDECAR_FILE, Sidecar
from awq2trt.triton import config as configs
from awq2trt.triton.repository import SERVING_MODULES, write_repository
from awq2trt.triton.serving import StopText, TextGenerator
from tests.conftest import engine_info_for

CASE = "llama-gemm-g64"
PROMPTS = ("Hello there", "The quick brown fox jumps over", "1 2 3")


@pytest.fixture(scope="module")
def ort_folder(shared_export: Any) -> Path:
    return Path(shared_export(CASE, "ort").output)


@pytest.fixture(scope="module")
def model(ort_folder: Path) -> OrtModel:
    return OrtModel.open(ort_folder, threads=1)


def _parsed(path: Path) -> Any:
    """A written config.pbtxt read back with Triton's schema (text_format fails on any unknown field)."""
    return configs.parse_config(path.read_text())


def _dims(config: Any) -> dict[str, list[int]]:
    return {t.name: list(t.dims) for t in (*config.input, *config.output)}


# -- configs and layouts --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "needle"), [("triton", "--kind {generate,onnxruntime,tensorrt}"), ("serve", "Ctrl-C")]
)
def test_help(command: str, needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert needle in capsys.readouterr().out


def test_generate_repository(ort_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    assert main(["triton", str(ort_folder), "-o", str(repo), "--name", "tiny", "--instances", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["models"] == ["tiny", "tiny_infer"]
    stream, infer = _parsed(repo / "tiny" / "config.pbtxt"), _parsed(repo / "tiny_infer" / "config.pbtxt")
    for config, decoupled in ((stream, True), (infer, False)):
        assert config.backend == "python" and config.max_batch_size == 0
        assert config.model_transaction_policy.decoupled is decoupled
        assert config.input[0].name == "text_input"
        assert {t.name for t in config.input if t.optional} == {
            "max_tokens",
            "temperature",
            "top_k",
            "top_p",
            "seed",
            "stop",
        }
        assert [(t.name, pb2.DataType.Name(t.data_type)) for t in config.output] == [("text_output", "TYPE_STRING")]
        group = config.instance_group[0]
        assert (pb2.ModelInstanceGroup.Kind.Name(group.kind), group.count) == ("KIND_CPU", 2)
        assert (repo / config.name / "1" / "model.py").is_file()
    # The streaming model finds the one copy of the weights and code through its own folder ...
    params = {k: v.string_value for k, v in stream.parameters.items()}
    assert (repo / "tiny" / params["model_folder"] / "model.onnx").is_file()
    assert (repo / "tiny" / params["code_folder"] / "awq2trt" / "triton" / "serving.py").is_file()
    # ... and the plain-infer model holds no weights: it forwards to the streaming one.
    assert {k: v.string_value for k, v in infer.parameters.items()} == {"forward_to": "tiny"}
    files = sorted(str(p.relative_to(repo)) for p in (repo / "tiny_infer").rglob("*") if p.is_file())
    assert files == ["tiny_infer/1/model.py", "tiny_infer/config.pbtxt"]
    assert "forward_to" in (repo / "tiny_infer" / "1" / "model.py").read_text()
    assert Sidecar.read(repo / "tiny" / "1" / "model") == Sidecar.read(ort_folder)


def test_onnxruntime_repository(ort_folder: Path, tmp_path: Path) -> None:
    sidecar = Sidecar.read(ort_folder)
    write_repository(ort_folder, tmp_path / "repo", kind="onnxruntime", name="g", device="gpu", instances=3)
    config = _parsed(tmp_path / "repo" / "g" / "config.pbtxt")
    assert (config.backend, config.default_model_filename, config.max_batch_size) == ("onnxruntime", "model.onnx", 0)
    assert [t.name for t in config.input] == list(sidecar.inputs)
    assert [t.name for t in config.output] == list(sidecar.outputs)
    dims = _dims(config)
    kv, head = sidecar.num_kv_heads, sidecar.head_dim
    assert dims["input_ids"] == [-1, -1] and dims["num_logits_to_keep"] == [1]
    assert dims["past_key_values.0.key"] == [-1, kv, -1, head] and dims["present.1.value"] == [-1, kv, -1, head]
    assert dims["logits"] == [-1, -1, sidecar.vocab_size]
    types = {t.name: pb2.DataType.Name(t.data_type) for t in (*config.input, *config.output)}
    assert types["input_ids"] == "TYPE_INT64" and types["logits"] == "TYPE_FP32"
    group = config.instance_group[0]
    assert (pb2.ModelInstanceGroup.Kind.Name(group.kind), group.count) == ("KIND_GPU", 3)
    version = tmp_path / "repo" / "g" / "1"
    assert {p.name for p in version.iterdir()} >= {"model.onnx", "model.onnx.data", SIDECAR_FILE, "tokenizer.json"}
    # The weights are linked, not copied, on one file system (an export is replaced by rename, never rewritten).
    assert (version / "model.onnx.data").stat().st_ino == (ort_folder / "model.onnx.data").stat().st_ino


def _engine_folder(shared_export: Any, tmp_path: Path, plugin: bool = False) -> Path:
    """A folder as `awq2trt build -o` leaves it, with a stand-in engine file (no TensorRT here)."""
    source = Path(shared_export(CASE, "trt").output)
    folder = tmp_path / "engine"
    folder.mkdir()
    for name in (SIDECAR_FILE, "tokenizer.json"):
        shutil.copyfile(source / name, folder / name)
    (folder / "model.plan").write_bytes(b"\0" * 1000)
    sidecar = Sidecar.read(folder)
    libs = ("/opt/libawq2trt_plugin.so",) if plugin else ()
    engine_info_for(sidecar, engine_bytes=1000, plugin_libs=libs).write(folder)
    return folder


def test_tensorrt_repository(shared_export: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _engine_folder(shared_export, tmp_path, plugin=True)
    repo = tmp_path / "repo"
    assert main(["triton", str(folder), "-o", str(repo), "--kind", "tensorrt", "--name", "trt"]) == 0
    assert "LD_PRELOAD" in capsys.readouterr().err  # the plugin library the engine needs
    config = _parsed(repo / "trt" / "config.pbtxt")
    assert (config.backend, config.default_model_filename) == ("tensorrt", "model.plan")
    assert pb2.ModelInstanceGroup.Kind.Name(config.instance_group[0].kind) == "KIND_GPU"
    types = {t.name: pb2.DataType.Name(t.data_type) for t in config.input}
    assert types["past_key_values.0.key"] == "TYPE_FP16"  # the trt target's default dtype
    assert (repo / "trt" / "1" / "model.plan").stat().st_size == 1000
    assert (repo / "trt" / "1" / "engine.json").is_file()


def test_every_written_config_round_trips(ort_folder: Path, tmp_path: Path) -> None:
    """Printing the parsed message gives the file back: nothing in it is outside the schema or dropped."""
    write_repository(ort_folder, tmp_path / "a", name="m")
    write_repository(ort_folder, tmp_path / "b", kind="onnxruntime", name="m")
    for path in sorted(tmp_path.rglob("config.pbtxt")):
        assert configs.to_text(_parsed(path)) == path.read_text()
    with pytest.raises(Awq2TrtError, match="not a Triton model config"):
        configs.parse_config('name: "x"\nbackend_name: "python"\n')


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--name", ".hidden"], "--name: expected letters"),
        (["--kind", "onnxruntime", "--max-batch", "4"], "--max-batch: expected no value for the graph kinds"),
        (["--kind", "tensorrt"], "engine.json: expected the file `awq2trt build` writes"),
    ],
)
def test_bad_input_is_one_line(
    ort_folder: Path, tmp_path: Path, argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["triton", str(ort_folder), "-o", str(tmp_path / "repo"), *argv]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err, err
    assert not (tmp_path / "repo").exists() and not list(tmp_path.iterdir())


def test_output_handling(ort_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    assert main(["triton", str(ort_folder), "-o", str(repo)]) == 0
    assert main(["triton", str(ort_folder), "-o", str(repo)]) == 1
    assert "pass --force" in capsys.readouterr().err
    assert main(["triton", str(ort_folder), "-o", str(repo), "--force", "--kind", "onnxruntime"]) == 0
    assert [p.name for p in repo.iterdir()] == [ort_folder.name]  # replaced whole, not merged
    assert main(["triton", str(tmp_path / "nowhere"), "-o", str(tmp_path / "r2")]) == 1
    assert "no such folder" in capsys.readouterr().err


def test_without_tritonclient_says_what_to_install(
    ort_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "tritonclient.grpc", None)  # import fails as if it were not installed
    assert main(["triton", str(ort_folder), "-o", str(tmp_path / "repo")]) == 4
    assert "awq2trt[triton]" in capsys.readouterr().err
    assert not (tmp_path / "repo").exists()


def test_served_code_is_only_what_the_repository_carries(ort_folder: Path, tmp_path: Path) -> None:
    """The copied modules alone (no awq2trt on the path) run a request; nothing else of awq2trt, nor torch."""
    write_repository(ort_folder, tmp_path / "repo", name="m")
    code = tmp_path / "repo" / "m" / "1"
    script = f"""
import json, sys
from awq2trt.triton.serving import TextGenerator
generator = TextGenerator.open({str(code / "model")!r})
pieces = []
outcome = generator.run(generator.parse({{"text_input": [b"Hello"], "max_tokens": [4]}}), pieces.append)
import awq2trt
watched = [m for m in sys.modules if m.startswith("awq2trt") or m in ("torch", "transformers", "onnx")]
print(json.dumps({{"file": awq2trt.__file__, "text": outcome.text, "pieces": "".join(pieces), "modules": watched}}))
"""
    env = {**os.environ, "PYTHONPATH": str(code)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["file"].startswith(str(code))
    assert report["text"] == report["pieces"]
    loaded = {m.replace("awq2trt", "", 1).lstrip(".").replace(".", "/") for m in report["modules"]}
    carried = {m.removesuffix(".py").removesuffix("/__init__") for m in SERVING_MODULES} | {""}
    assert loaded <= carried, loaded - carried
    assert not {"torch", "transformers", "onnx"} & set(report["modules"])


# -- requests, as the Python-backend model hands them over ----------------------------------------------------


def _inputs(prompt: str, **options: Any) -> dict[str, np.ndarray]:
    inputs = {"text_input": np.array([prompt.encode()], dtype=object)}
    for key, value in options.items():
        inputs[key] = np.array(value if isinstance(value, list) else [value])
    return inputs


def test_greedy_text_is_the_runtimes(model: OrtModel) -> None:
    generator = TextGenerator(model)
    for prompt in PROMPTS:
        expected = model.generate(prompt, 12).texts[0]
        pieces: list[str] = []
        outcome = generator.run(generator.parse(_inputs(prompt, max_tokens=12)), pieces.append)
        assert outcome.text == "".join(pieces) == expected
        assert outcome.finish_reason in ("length", "eos")


def test_sampling_is_per_request_and_seeded(model: OrtModel) -> None:
    generator = TextGenerator(model)
    request = generator.parse(_inputs("Hello", max_tokens=10, temperature=0.8, top_k=20, seed=7))
    first = generator.run(request, lambda _: None).text
    assert generator.run(request, lambda _: None).text == first
    assert first == model.generate("Hello", 10, sampling=request.sampling).texts[0]


def test_stop_strings(model: OrtModel) -> None:
    generator = TextGenerator(model)
    full = model.generate(PROMPTS[1], 16).texts[0]
    stop = full[5:8]
    assert stop and stop in full
    pieces: list[str] = []
    outcome = generator.run(generator.parse(_inputs(PROMPTS[1], max_tokens=16, stop=[stop.encode()])), pieces.append)
    assert outcome.finish_reason == "stop"
    assert outcome.text == "".join(pieces) == full[: full.index(stop)]


def test_stop_text_holds_back_what_may_start_a_stop() -> None:
    stops = StopText(("END",))
    assert stops.push("abc E") == ("abc ", False)  # "E" may begin "END"
    assert stops.push("N") == ("", False)
    assert stops.push("Dxyz") == ("", True)
    assert stops.text == "abc "
    again = StopText(("END",))
    assert again.push("E") == ("", False) and again.push("x") == ("Ex", False)


@pytest.mark.parametrize(
    ("inputs", "parameters", "needle"),
    [
        ({"text_input": np.array([b""], dtype=object)}, None, "text_input: expected a non-empty prompt"),
        ({"max_tokens": None}, None, "text_input: expected a prompt"),
        (_inputs("hi", max_tokens=0), None, "max_tokens: expected an integer >= 1, got 0"),
        (_inputs("hi", temperature=-1.0), None, "temperature: expected a number >= 0"),
        (_inputs("hi", top_p=0.0), None, "top_p: expected a number in (0, 1]"),
        (_inputs("hi"), {"beam_width": 2}, "parameter 'beam_width': expected only max_tokens"),
        (_inputs("hi"), {"max_tokens": "many"}, "max_tokens: expected an integer, got 'many'"),
        ({"text_input": np.array([b"\xff"], dtype=object)}, None, "text_input: expected UTF-8 text"),
    ],
)
def test_bad_requests_are_one_line(
    model: OrtModel, inputs: dict[str, Any], parameters: dict[str, Any] | None, needle: str
) -> None:
    with pytest.raises(Awq2TrtError) as error:
        TextGenerator(model).parse(inputs, parameters)
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_prompt_longer_than_the_context(model: OrtModel) -> None:
    limit = model.max_positions
    assert limit
    ids_per_word = len(model.encode(" a" * 10)) / 10
    prompt = " a" * int(limit / ids_per_word + 10)
    with pytest.raises(Awq2TrtError, match="fewer than the model's context of"):
        TextGenerator(model).parse(_inputs(prompt))
    # max_tokens is cut to what the context leaves.
    short = " a" * int((limit - 8) / ids_per_word)
    request = TextGenerator(model).parse(_inputs(short, max_tokens=10_000))
    assert len(request.prompt_ids) + request.max_tokens == limit


def test_parameters_carry_the_options(model: OrtModel) -> None:
    request = TextGenerator(model).parse(_inputs("hi"), {"max_tokens": 3, "temperature": 0.5, "seed": 1, "stop": "x"})
    assert request.max_tokens == 3 and request.sampling.temperature == 0.5 and request.stop == ("x",)
    assert TextGenerator(model, default_max_tokens=5).parse(_inputs("hi")).max_tokens == 5


def test_cancelled_request_stops(model: OrtModel) -> None:
    generator = TextGenerator(model)
    outcome = generator.run(generator.parse(_inputs("Hello", max_tokens=20)), lambda _: None, cancelled=lambda: True)
    assert outcome.finish_reason == "cancelled" and outcome.tokens == 1


# -- in-flight batching ---------------------------------------------------------------------------------------

BATCH_PROMPTS = (
    "Hello there",
    "The quick brown fox jumps over the lazy dog and",
    "1 2 3",
    "a",
    "Once upon a time in a land far away there lived",
    "x y",
    "What is the answer",
    "zz",
)
BATCH_LENGTHS = (5, 30, 17, 40, 12, 25, 33, 8)


def _run_batched(generator: TextGenerator, requests: list[Any], stagger: int) -> tuple[list[Any], int]:
    """Submit *requests*, the ones from index *stagger* on only once decoding has started; (results, steps)."""
    import threading
    import time

    scheduler = generator.batching(8)
    assert scheduler is not None
    results: list[Any] = [None] * len(requests)
    finished = threading.Semaphore(0)

    def submit(index: int) -> None:
        pieces: list[str] = []

        def done(outcome: Any, error: BaseException | None) -> None:
            results[index] = (outcome, error, "".join(pieces))
            finished.release()

        scheduler.submit(requests[index], pieces.append, done)

    try:
        for index in range(stagger):
            submit(index)
        deadline = time.monotonic() + 10
        while scheduler.steps == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        for index in range(stagger, len(requests)):  # these join while the first ones are mid-answer
            submit(index)
        for _ in requests:
            assert finished.acquire(timeout=60)
        return results, scheduler.steps
    finally:
        scheduler.close()


def test_batched_requests_answer_as_one_at_a_time(model: OrtModel) -> None:
    generator = TextGenerator(model)
    requests = [generator.parse(_inputs(p, max_tokens=n)) for p, n in zip(BATCH_PROMPTS, BATCH_LENGTHS, strict=True)]
    expected = [model.generate(p, n).texts[0] for p, n in zip(BATCH_PROMPTS, BATCH_LENGTHS, strict=True)]
    results, steps = _run_batched(generator, requests, stagger=3)
    for (outcome, error, streamed), text in zip(results, expected, strict=True):
        assert error is None
        assert outcome.text == streamed == text
    tokens = sum(outcome.tokens for outcome, _, _ in results)
    assert steps <= max(BATCH_LENGTHS) + 8  # decode steps were shared, not one per token
    assert tokens > 2 * steps


def test_batched_stop_and_failing_client(model: OrtModel) -> None:
    """A request whose emit raises (a client gone) ends alone; a stop string ends its request early."""
    generator = TextGenerator(model)
    full = model.generate(BATCH_PROMPTS[1], 20).texts[0]
    stop = full[6:9]
    requests = [
        generator.parse(_inputs(BATCH_PROMPTS[1], max_tokens=20, stop=[stop.encode()])),
        generator.parse(_inputs(BATCH_PROMPTS[0], max_tokens=20)),
    ]
    results, _ = _run_batched(generator, requests, stagger=2)
    assert results[0][0].finish_reason == "stop" and results[0][0].text == full[: full.index(stop)]
    assert results[1][0].text == model.generate(BATCH_PROMPTS[0], 20).texts[0]

    scheduler = generator.batching(4)
    assert scheduler is not None
    import threading

    outcomes: dict[str, Any] = {}
    finished = threading.Semaphore(0)

    def broken(piece: str) -> None:
        raise ConnectionError("client went away")

    def done(key: str) -> Any:
        def record(outcome: Any, error: BaseException | None) -> None:
            outcomes[key] = (outcome, error)
            finished.release()
            if key == "broken":
                raise RuntimeError("a failing done callback must not stop the scheduler")

        return record

    try:
        scheduler.submit(requests[1], broken, done("broken"))
        scheduler.submit(requests[1], lambda _: None, done("fine"))
        assert finished.acquire(timeout=30) and finished.acquire(timeout=30)
    finally:
        scheduler.close()
    assert isinstance(outcomes["broken"][1], ConnectionError)
    assert outcomes["fine"][0].text == results[1][0].text


def test_batching_needs_a_shared_buffer_graph(shared_export: Any, model: OrtModel) -> None:
    concat = OrtModel.open(shared_export(CASE, "ir").output, threads=1)
    assert not concat.sidecar.kv_cache.shared_buffer
    assert TextGenerator(concat).batching(8) is None  # one request at a time there
    assert TextGenerator(model).batching(1) is None
