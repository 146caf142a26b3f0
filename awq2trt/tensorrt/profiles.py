"""The engine's two optimization profiles, from the sidecar and the user's limits: a pure function, no TensorRT.

An engine built from a graph with dynamic dims needs, for every dynamic input, the smallest, the best-tuned and
the largest shape it will be run with.  Generation runs the graph in two regimes, so the engine gets one
profile for each and the runtime selects the one that fits each step:

* ``prefill`` (index 0): the prompt, ``seq`` 1..max_seq tokens, no cache yet (every past is 0 long);
* ``decode`` (index 1): one new token per row, a cache of 0..max_context-1 positions.

The trt target keeps the cache by Concat (present = past + new), so past and present lengths differ by ``seq``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from awq2trt.errors import Awq2TrtError
from awq2trt.ir import io_names
from awq2trt.sidecar import SIDECAR_FILE, Sidecar
from awq2trt.tensorrt.engine_info import Profile, ShapeRange

TRT_TARGETS = ("trt", "trt-plugin")  # exports whose graphs TensorRT parses
DEFAULT_MAX_BATCH = 1  # one conversation at a time: the smallest engine, the fastest build
DEFAULT_MAX_CONTEXT = 4096  # capped by the model's max_position_embeddings
TOKEN_DIMS = ("batch", "seq")
MASK_DIMS = ("batch", "total_seq")
KV_DIMS = ("batch", "num_kv_heads", "past_seq", "head_dim")


@dataclass(frozen=True)
class Limits:
    """The largest batch, prompt and context an engine takes (CLI: --max-batch, --max-seq, --max-context)."""

    max_batch: int
    max_seq: int
    max_context: int


def engine_limits(
    sidecar: Sidecar,
    max_batch: int | None = None,
    max_seq: int | None = None,
    max_context: int | None = None,
    *,
    where: str | Path = SIDECAR_FILE,
) -> Limits:
    """The user's limits with the defaults filled in, checked against each other and the model.

    Defaults: batch 1; context min(4096, max_position_embeddings); the prompt may fill the whole context.
    """
    check_sidecar(sidecar, where)
    # The given values first: a default derived from a bad one would blame the wrong flag.
    for flag, value in (("--max-batch", max_batch), ("--max-seq", max_seq), ("--max-context", max_context)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise Awq2TrtError(flag, expected="an integer >= 1", got=value)
    positions = sidecar.max_position_embeddings
    if max_context is None:
        max_context = min(DEFAULT_MAX_CONTEXT, positions) if positions else DEFAULT_MAX_CONTEXT
    if max_seq is None:
        max_seq = max_context
    if max_batch is None:
        max_batch = DEFAULT_MAX_BATCH
    if max_seq > max_context:
        raise Awq2TrtError(
            "--max-seq",
            expected=f"at most --max-context = {max_context} (the prompt is part of the context)",
            got=max_seq,
        )
    if positions is not None and max_context > positions:
        raise Awq2TrtError(
            "--max-context", expected=f"at most the model's max_position_embeddings = {positions}", got=max_context
        )
    return Limits(max_batch, max_seq, max_context)


def check_sidecar(sidecar: Sidecar, where: str | Path = SIDECAR_FILE) -> None:
    """The export must be for TensorRT, keep its cache by Concat, and name its dims as the profiles expect."""
    if sidecar.target not in TRT_TARGETS:
        raise Awq2TrtError(
            f"{where}: target",
            expected=f"an export for TensorRT ({' or '.join(TRT_TARGETS)}; `awq2trt export --target trt`)",
            got=sidecar.target,
        )
    if sidecar.kv_cache.shared_buffer:
        raise Awq2TrtError(
            f"{where}: kv_cache.shared_buffer",
            expected="false (the profiles give past and present their own lengths)",
            got=True,
        )
    for name, dims in _expected_dims(sidecar).items():
        spec = sidecar.inputs.get(name)
        if spec is None:
            raise Awq2TrtError(f"{where}: inputs", expected=f"an input {name}", got="none")
        if tuple(spec.shape) != dims:
            raise Awq2TrtError(f"{where}: inputs.{name}.shape", expected=str(list(dims)), got=list(spec.shape))
    if sidecar.keeps_logits and tuple(sidecar.inputs[io_names.LOGITS_TO_KEEP].shape) != (1,):
        shape = list(sidecar.inputs[io_names.LOGITS_TO_KEEP].shape)
        raise Awq2TrtError(f"{where}: inputs.{io_names.LOGITS_TO_KEEP}.shape", expected="[1]", got=shape)


def _expected_dims(sidecar: Sidecar) -> dict[str, tuple[str | int, ...]]:
    dims: dict[str, tuple[str | int, ...]] = {
        io_names.INPUT_IDS: TOKEN_DIMS,
        io_names.POSITION_IDS: TOKEN_DIMS,
        io_names.ATTENTION_MASK: MASK_DIMS,
    }
    return {**dims, **dict.fromkeys(sidecar.past_names(), KV_DIMS)}


def optimization_profiles(sidecar: Sidecar, max_batch: int, max_seq: int, max_context: int) -> tuple[Profile, ...]:
    """``(prefill, decode)`` for the sidecar's inputs; raises a one-line ``Awq2TrtError`` for bad limits."""
    limits = engine_limits(sidecar, max_batch, max_seq, max_context)
    batch, seq, context = limits.max_batch, limits.max_seq, limits.max_context
    heads, head_dim = sidecar.num_kv_heads, sidecar.head_dim
    # Tuned batch: the largest.  A batched run prefills and decodes the same rows, and decode (one token per
    # row, bound by reading the int4 weights) gains most from kernels tuned for the full batch.
    opt_batch = batch
    # Tuned prompt: half the longest.  Prefill time grows with the prompt, so the long prompts matter most;
    # tuning for the very longest would favour shapes few prompts have.
    opt_seq = max(1, seq // 2)
    # Tuned cache: half the context, the average cache length over a generation that fills the context.
    opt_past = (context - 1) // 2
    past_names = sidecar.past_names()

    def kv(low: int, opt: int, high: int) -> dict[str, ShapeRange]:
        shape = ShapeRange((1, heads, low, head_dim), (opt_batch, heads, opt, head_dim), (batch, heads, high, head_dim))
        return dict.fromkeys(past_names, shape)

    prefill_tokens = ShapeRange((1, 1), (opt_batch, opt_seq), (batch, seq))
    prefill = Profile(
        name="prefill",
        shapes={
            io_names.INPUT_IDS: prefill_tokens,
            io_names.POSITION_IDS: prefill_tokens,
            io_names.ATTENTION_MASK: prefill_tokens,  # no cache yet: total_seq = seq
            **kv(0, 0, 0),
        },
        # 0 = every position's logits (perplexity), k = the last k; generation keeps the last one.
        values=_logits_to_keep(sidecar, ShapeRange((0,), (1,), (seq,))),
    )
    decode_tokens = ShapeRange((1, 1), (opt_batch, 1), (batch, 1))
    decode = Profile(
        name="decode",
        shapes={
            io_names.INPUT_IDS: decode_tokens,
            io_names.POSITION_IDS: decode_tokens,
            io_names.ATTENTION_MASK: ShapeRange((1, 1), (opt_batch, opt_past + 1), (batch, context)),
            **kv(0, opt_past, context - 1),
        },
        # One token per row: keeping more than 1 means nothing, and a larger bound would make TensorRT reserve
        # logits for max_seq positions on every step.
        values=_logits_to_keep(sidecar, ShapeRange((0,), (1,), (1,))),
    )
    return prefill, decode


def _logits_to_keep(sidecar: Sidecar, values: ShapeRange) -> dict[str, ShapeRange]:
    return {io_names.LOGITS_TO_KEEP: values} if sidecar.keeps_logits else {}
