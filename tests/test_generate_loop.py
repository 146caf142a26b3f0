"""The backend-neutral generation loop (runtime/generate.py) driven by a scripted fake step, then by ONNX Runtime.

The fake backend hands out logits that make a chosen token the argmax at every step, and records what the loop
fed it, so stopping, EOS per row, streaming order, padding and batching are checked without any model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from awq2trt.errors import Awq2TrtError
from awq2trt.runtime.generate import Text, generate_tokens
from awq2trt.runtime.sampling import SamplingConfig
from awq2trt.runtime.step import ModelTokens, PaddingSide
from tests.conftest import fixture_path
from tests.ort_driver import IrSession

VOCAB = 32
EOS = 31
Script = Callable[[int, int], int]  # (row, step) -> the token the logits make the argmax


@dataclass
class FakeBatch:
    """A ``SequenceBatch`` whose logits follow a script; it records every call the loop makes."""

    script: Script
    batch: int
    capacity: int
    padding: PaddingSide
    prefills: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    fed: list[list[int]] = field(default_factory=list)  # tokens passed to each step

    def logits(self) -> np.ndarray:
        out = np.zeros((self.batch, VOCAB), np.float32)
        for row in range(self.batch):
            out[row, self.script(row, len(self.fed))] = 1.0
        return out

    def prefill(self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        self.prefills.append((ids.copy(), mask.copy(), positions.copy(), lengths.copy()))
        return self.logits()

    def step(self, tokens: np.ndarray) -> np.ndarray:
        assert tokens.shape == (self.batch,)
        self.fed.append(tokens.tolist())
        assert int(self.prefills[0][3].max()) + len(self.fed) <= self.capacity, "the loop passed its capacity"
        return self.logits()


class FakeModel:
    """A ``StepModel``: hands out one FakeBatch per generate call and keeps it for the test to inspect."""

    def __init__(
        self,
        script: Script,
        *,
        padding: PaddingSide = "left",
        max_positions: int | None = 64,
        batch_type: type[FakeBatch] = FakeBatch,
    ) -> None:
        self.tokens = ModelTokens(VOCAB, max_positions, frozenset({EOS}), pad_id=0)
        self.script = script
        self.padding = padding
        self.batch_type = batch_type
        self.batches: list[FakeBatch] = []

    def new_sequence_batch(self, batch: int, capacity: int) -> FakeBatch:
        self.batches.append(self.batch_type(self.script, batch, capacity, self.padding))
        return self.batches[-1]


class LetterTokenizer:
    """Token i is the letter chr(97 + i); enough of ``tokenizers.Tokenizer`` for encode, decode and streaming."""

    @dataclass
    class Encoding:
        ids: list[int]

    def encode(self, text: str, add_special_tokens: bool = True) -> Encoding:
        return self.Encoding([ord(c) - 97 for c in text])

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(chr(97 + i) for i in ids if not (skip_special_tokens and i == EOS))


NO_TEXT = Text(None, "tokenizer.json")


def counting(row: int, step: int) -> int:
    return (10 * row + step + 1) % EOS  # never EOS


def test_length_stop_and_scripted_tokens() -> None:
    model = FakeModel(counting)
    result = generate_tokens(model, NO_TEXT, [[1, 2, 3], [4]], 5)
    assert result.ids == [[1, 2, 3, 4, 5], [11, 12, 13, 14, 15]]
    assert result.finish_reasons == ["length", "length"]
    assert result.texts == [None, None]
    batch = model.batches[0]
    assert len(batch.fed) == 4  # no step after the last token is sampled
    assert batch.fed[0] == [1, 11] and batch.fed[-1] == [4, 14]
    assert batch.capacity == 3 + 5
    assert result.timing.decode_tokens == 2 * 4


def test_eos_stops_each_row_and_then_the_batch() -> None:
    stop_at = {0: 1, 1: 3}  # row 0 emits EOS at step 1, row 1 at step 3

    def script(row: int, step: int) -> int:
        return EOS if step == stop_at[row] else counting(row, step)

    model = FakeModel(script)
    result = generate_tokens(model, NO_TEXT, [[1], [2]], 10)
    assert result.ids == [[1, EOS], [11, 12, 13, EOS]]
    assert result.finish_reasons == ["eos", "eos"]
    assert len(model.batches[0].fed) == 3  # the batch stops when its last row does, not at max_new_tokens
    assert result.timing.decode_tokens == 1 + 3
    ignored = generate_tokens(FakeModel(script), NO_TEXT, [[1], [2]], 6, stop_at_eos=False)
    assert [len(row) for row in ignored.ids] == [6, 6] and ignored.finish_reasons == ["length", "length"]


def test_max_positions_bound_the_steps() -> None:
    model = FakeModel(counting, max_positions=8)
    result = generate_tokens(model, NO_TEXT, [1] * 6, 10)
    assert result.ids == [[1, 2]] and result.finish_reasons == ["length"]
    assert model.batches[0].capacity == 8
    with pytest.raises(Awq2TrtError, match="at most max_position_embeddings = 8 tokens, got 9"):
        generate_tokens(model, NO_TEXT, [1] * 9, 1)
    nothing = generate_tokens(model, NO_TEXT, [1] * 8, 4)
    assert nothing.ids == [[]] and len(model.batches) == 1  # a full context runs no forward at all


@pytest.mark.parametrize("padding", ["left", "right"])
def test_prompts_are_padded_on_the_side_the_batch_asks(padding: PaddingSide) -> None:
    model = FakeModel(counting, padding=padding)
    generate_tokens(model, NO_TEXT, [[5, 6, 7], [8]], 2)
    ids, mask, positions, lengths = model.batches[0].prefills[0]
    assert lengths.tolist() == [3, 1]
    if padding == "left":
        assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
        assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
        assert positions.tolist() == [[0, 1, 2], [0, 0, 0]]
    else:
        assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
        assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
        assert positions.tolist() == [[0, 1, 2], [0, 0, 0]]


def test_streaming_order_and_text() -> None:
    stop_at = {0: 2, 1: 4}

    def script(row: int, step: int) -> int:
        return EOS if step == stop_at[row] else 2 * row + step

    pieces: list[tuple[int, str]] = []
    text = Text(LetterTokenizer(), "tokenizer.json")
    result = generate_tokens(FakeModel(script), text, ["ab", "c"], 8, on_text=lambda r, p: pieces.append((r, p)))
    assert result.prompt_ids == [[0, 1], [2]]
    # Step by step, rows in order; a row that stopped sends nothing more.
    assert pieces == [(0, "a"), (1, "c"), (0, "b"), (1, "d"), (1, "e"), (1, "f")]
    assert result.texts == ["ab", "cdef"]
    assert result.ids == [[0, 1, EOS], [2, 3, 4, 5, EOS]]


def test_text_needs_a_tokenizer() -> None:
    with pytest.raises(Awq2TrtError, match=r"tokenizer\.json: expected a tokenizer for text prompts or output"):
        generate_tokens(FakeModel(counting), NO_TEXT, "hello", 2)
    with pytest.raises(Awq2TrtError, match="expected a tokenizer"):
        generate_tokens(FakeModel(counting), NO_TEXT, [1], 2, on_text=lambda r, p: None)


@pytest.mark.parametrize(
    ("prompts", "message"),
    [
        ([[1], []], "prompt 1: expected at least one token"),
        ([1, VOCAB], rf"prompt 0: expected token ids in \[0, {VOCAB}\), got {VOCAB}"),
        ([[1], 3.5], "prompt 1: expected text or a list of token ids, got float"),
    ],
)
def test_bad_prompts_fail_before_any_forward(prompts: object, message: str) -> None:
    model = FakeModel(counting)
    with pytest.raises(Awq2TrtError, match=message):
        generate_tokens(model, NO_TEXT, prompts, 2)  # type: ignore[arg-type]
    assert model.batches == []
    with pytest.raises(Awq2TrtError, match="max_new_tokens"):
        generate_tokens(model, NO_TEXT, [1], -1)


class TiedBatch(FakeBatch):
    """Tokens 3 and 4 share the top logit at every step."""

    def logits(self) -> np.ndarray:
        row = np.zeros(VOCAB, np.float32)
        row[[3, 4]] = 1.0
        return np.tile(row, (self.batch, 1))


def test_sampling_draws_from_the_logits() -> None:
    """A seeded hot sampler picks both tied tokens over 40 steps, the same ones again; greedy only the lower id."""
    hot = SamplingConfig(temperature=0.05, seed=1)
    sampled = generate_tokens(FakeModel(counting, batch_type=TiedBatch), NO_TEXT, [1], 40, sampling=hot).ids[0]
    assert set(sampled) == {3, 4}
    assert sampled == generate_tokens(FakeModel(counting, batch_type=TiedBatch), NO_TEXT, [1], 40, sampling=hot).ids[0]
    assert set(generate_tokens(FakeModel(counting, batch_type=TiedBatch), NO_TEXT, [1], 40).ids[0]) == {3}


# -- the ONNX Runtime step ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ort_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from awq2trt.frontend.export import export_checkpoint

    out = tmp_path_factory.mktemp("loop") / "ort"
    return export_checkpoint(fixture_path("llama-gemm-g64"), out, target="ort", accuracy_level=0, progress=False).output


def test_ort_step_decodes_what_the_plain_driver_does(ort_folder: Path) -> None:
    """A ragged batch through the shared-buffer ORT step equals each prompt's greedy run in the plain driver."""
    from awq2trt.runtime import OrtModel
    from awq2trt.runtime.ort_step import OrtSequenceBatch

    model = OrtModel.open(ort_folder, threads=2)
    assert model.sidecar.kv_cache.shared_buffer and model.sidecar.keeps_logits
    prompts = [[0, 17, 42, 99, 123, 7, 300, 12], [5, 9, 2], [77]]
    result = generate_tokens(model.steps, model.text, prompts, 12, stop_at_eos=False)
    driver = IrSession(ort_folder)
    for row, prompt in enumerate(prompts):
        expected, _ = driver.greedy(np.array([prompt], np.int64), 12)
        assert result.ids[row] == expected[0].tolist(), row
    sequences = model.steps.new_sequence_batch(1, 4)
    assert isinstance(sequences, OrtSequenceBatch)
    assert sequences.step == sequences.cache.step  # decode calls the cache directly: no wrapper per token
