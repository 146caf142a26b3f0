"""The perplexity column of scripts/bench_decode.py: the peers' scorer (scripts/bench_peers/protocol.py, which
cannot import the project) must give the project's own perplexity on the same windows, and our worker must
answer the request over the line protocol with the figure awq2trt measures in-process."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from awq2trt.evaluate.perplexity import perplexity, window_spans
from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))  # bench_decode imports its siblings as the script itself does
import bench_decode
from bench_peers import protocol

VOCAB = 37


def random_logits_fn(seed: int) -> Any:
    """A deterministic stand-in for an engine: each window's logits depend on its ids only."""

    def logits(ids: list[int] | np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        rng = np.random.default_rng(seed + int(ids.sum()) * 31 + len(ids))
        return (rng.standard_normal((len(ids), VOCAB)) * 4).astype(np.float32)

    return logits


def windows_of(ids: list[int], window: int, stride: int) -> protocol.Windows:
    return protocol.Windows(ids, window, stride, window_spans(len(ids), window, stride))


@pytest.mark.parametrize(("tokens", "window", "stride"), [(200, 64, 64), (200, 64, 16), (65, 64, 64), (10, 4, 3)])
def test_peer_scorer_matches_the_projects_perplexity(tokens: int, window: int, stride: int) -> None:
    ids = np.random.default_rng(tokens).integers(0, VOCAB, tokens).tolist()
    engine = random_logits_fn(7)
    expected = perplexity(ids, lambda batch: engine(batch)[None], window=window, stride=stride)
    windows = windows_of(ids, window, stride)
    reply = protocol.perplexity_reply(protocol.logits_scorer(engine), windows)
    assert reply["tokens_scored"] == expected.tokens_scored == windows.tokens_scored
    assert reply["windows"] == expected.windows
    assert math.isclose(reply["perplexity"], expected.perplexity, rel_tol=1e-9)


def test_request_survives_the_line_protocol() -> None:
    windows = windows_of(list(range(50)), 16, 8)
    message = json.loads(json.dumps(windows.request()))
    assert message["op"] == "perplexity"
    assert protocol.Windows.from_request(message) == windows


def test_an_engine_without_logits_answers_with_its_reason() -> None:
    loaded = protocol.Loaded(lambda ids, n: {}, {}, score=None, no_score_reason="no logits here")
    assert protocol.answer(loaded, windows_of(list(range(8)), 4, 4).request()) == {"error": "no logits here"}


def test_scorer_refuses_logits_of_the_wrong_length() -> None:
    score = protocol.logits_scorer(lambda ids: np.zeros((len(ids) - 1, VOCAB), np.float32))
    with pytest.raises(ValueError, match="rows of logits"):
        score(windows_of(list(range(8)), 4, 4))


def test_a_reply_that_scored_other_tokens_is_no_perplexity() -> None:
    windows = windows_of(list(range(40)), 16, 16)
    good = {"perplexity": 3.0, "tokens_scored": windows.tokens_scored}
    assert bench_decode.perplexity_problem(good, windows) is None
    assert "not the" in str(bench_decode.perplexity_problem({**good, "tokens_scored": 1}, windows))
    assert bench_decode.perplexity_problem({"error": "boom"}, windows) == "boom"


def test_table_shows_the_perplexity_beside_the_speed() -> None:
    run = {"chat": {"decode_tokens": 9, "decode_s": 0.1, "prefill_s": 0.01, "ttft_s": 0.02}}
    run["long"] = {"prefill_s": 0.05, "ttft_s": 0.06}
    measured = bench_decode.Engine("ours-int4", "ours", runs=[run], perplexity={"perplexity": 12.3456})
    failed = bench_decode.Engine("genai", "GenAI", runs=[run], ppl_reason="no logits")
    prompts = bench_decode.Prompts(list(range(5)), list(range(20)))
    summaries = {e.key: bench_decode.summarize(e, prompts, 10.0) for e in (measured, failed)}
    lines = bench_decode.table([measured, failed], summaries, prompts, "ours-int4", with_ppl=True).splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    column = header.index("perplexity")
    assert header[column - 1] == "decode tok/s"
    assert [row.strip("|").split("|")[column].strip() for row in lines[2:]] == ["12.346", "n/a"]
    plain = bench_decode.table([measured], summaries, prompts, "ours-int4")
    assert "perplexity" not in plain


def test_ours_worker_answers_with_the_projects_perplexity(shared_export: Any) -> None:
    from awq2trt.runtime import OrtModel

    folder = shared_export("llama-gemm-g64").output
    model = OrtModel.open(folder, threads=1)
    ids = np.random.default_rng(3).integers(0, model.vocab_size, 96).tolist()
    expected = perplexity(ids, model.logits, window=32, stride=16)
    worker = ROOT / "scripts" / "bench_peers" / "ours_worker.py"
    request = windows_of(ids, 32, 16).request()
    lines = json.dumps(request) + "\n" + json.dumps({"op": "quit"}) + "\n"
    out = subprocess.run(
        [sys.executable, str(worker), str(folder), "--threads", "1"],
        input=lines,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    replies = [json.loads(line) for line in out.stdout.splitlines()]
    assert out.returncode == 0 and replies[0].get("ready"), out.stderr[-2000:]
    reply = replies[1]
    assert reply["tokens_scored"] == expected.tokens_scored
    assert math.isclose(reply["perplexity"], expected.perplexity, rel_tol=1e-6)
    # A peer's scorer over the same logits agrees: every engine's figure is the same measurement.
    peer = protocol.perplexity_reply(protocol.logits_scorer(lambda w: model.logits(w)[0]), windows_of(ids, 32, 16))
    assert math.isclose(peer["perplexity"], expected.perplexity, rel_tol=1e-6)
