"""An ONNX Runtime session over the graph ``awq2trt export`` writes: validation, generation, perplexity logits.

Only onnxruntime, numpy and ``tokenizers`` are needed (jinja2 too, for chat templates, imported on first use);
nothing here imports torch, transformers or the awq2trt compiler.

How the KV cache is kept depends on the graph (``kv_cache``): ``present`` built by Concat is fed back as
numpy arrays; a GroupQueryAttention graph (sidecar ``kv_cache.shared_buffer``) gets one preallocated buffer per
tensor bound as both past and present.  The measurements behind both choices are in ``kv_cache``.  For the
Concat form, measured on the exported llama-gemm-g64 fixture (CPU provider, 4 threads, greedy decode, best
of 5), IO binding did not beat plain ``run``:

======================  ===============  ================================  =======================================
batch / prompt / steps  numpy ``run``    IO binding, OrtValue passthrough  IO binding into preallocated ping-pong
                                         (``bind_ortvalue_input``)         buffers of capacity max_length
======================  ===============  ================================  =======================================
1 / 16 / 64             956 steps/s      935 steps/s                       835 steps/s
4 / 128 / 256           219 steps/s      166 steps/s                       187 steps/s
8 / 256 / 256            57 steps/s       53 steps/s                        49 steps/s
======================  ===============  ================================  =======================================
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from awq2trt.errors import Awq2TrtError
from awq2trt.runtime.kv_cache import ConcatCache, SharedBufferCache, padded_mask
from awq2trt.runtime.sampling import Sampler, SamplingConfig
from awq2trt.runtime.streaming import IncrementalDecoder

SIDECAR_FILE = "awq2trt.json"
SIDECAR_FORMAT = "awq2trt-onnx"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
_ORT_TYPES = {"tensor(int64)": "int64", "tensor(float)": "float32", "tensor(float16)": "float16"}
_NUMPY_TYPES = {"float32": np.float32, "float16": np.float16}
_KEEP_LAST = np.ones(1, dtype=np.int64)  # num_logits_to_keep = 1: prefill needs the last position only
_KEEP_ALL = np.zeros(1, dtype=np.int64)

Prompt = str | Sequence[int] | np.ndarray
TextCallback = Callable[[int, str], None]


@dataclass(frozen=True)
class Timing:
    """Wall-clock figures of one ``generate`` call.

    ``ttft_s`` runs from the call (tokenization included) to the first sampled token; ``prefill_s`` is the
    prefill forward alone.  ``decode_tokens`` counts the tokens sampled after the first one of each row, over
    ``decode_s`` seconds of decoding.
    """

    prefill_s: float
    ttft_s: float
    decode_s: float
    decode_tokens: int
    total_s: float

    @property
    def decode_tokens_per_s(self) -> float:
        return self.decode_tokens / self.decode_s if self.decode_s > 0 else 0.0


@dataclass(frozen=True)
class Generation:
    """Per prompt: its ids, the new ids (an EOS that stopped it included), their text and why it stopped."""

    prompt_ids: list[list[int]]
    ids: list[list[int]]
    texts: list[str | None]
    finish_reasons: list[str]  # "eos" or "length"
    timing: Timing = field(repr=False)


class OrtModel:
    """An exported folder opened for inference; build it with :meth:`open`."""

    def __init__(
        self, folder: Path, sidecar: dict[str, Any], session: ort.InferenceSession, tokenizer: Any | None
    ) -> None:
        self.folder = folder
        self.sidecar = sidecar
        self.session = session
        self.tokenizer = tokenizer
        self.num_layers = int(sidecar["num_layers"])
        self.dtype = _NUMPY_TYPES[sidecar["dtype"]]
        self.vocab_size = int(sidecar["vocab_size"])
        self.max_positions = sidecar.get("max_position_embeddings")
        self.eos_ids = frozenset(int(i) for i in sidecar.get("eos_token_id") or [])
        pad = sidecar.get("pad_token_id")
        self.pad_id = int(pad if pad is not None else min(self.eos_ids, default=0))
        self._past = [f"past_key_values.{i}.{kind}" for i in range(self.num_layers) for kind in ("key", "value")]
        # Graphs exported since num_logits_to_keep exists take it; older ones compute every position's logits.
        self._can_keep_last = "num_logits_to_keep" in sidecar["inputs"]
        # GroupQueryAttention graphs append to a buffer bound as both past and present (see kv_cache).
        self.shared_kv = bool((sidecar.get("kv_cache") or {}).get("shared_buffer", False))
        self.device = "cuda" if session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        self._outputs = [
            "logits",
            *(f"present.{i}.{kind}" for i in range(self.num_layers) for kind in ("key", "value")),
        ]

    # -- opening ------------------------------------------------------------------------------------------------

    @classmethod
    def open(
        cls, folder: str | Path, *, providers: Sequence[str] | None = None, threads: int | None = None
    ) -> OrtModel:
        """Read and check ``awq2trt.json``, load ``model.onnx`` and check its IO against the sidecar."""
        folder = Path(folder)
        if not folder.is_dir():
            raise Awq2TrtError(folder, expected="a folder written by `awq2trt export`", got="no such folder")
        sidecar = _read_sidecar(folder / SIDECAR_FILE)
        model_path = folder / sidecar["model"]
        if not model_path.is_file():
            raise Awq2TrtError(model_path, expected=f"the model file named in {SIDECAR_FILE}", got="no such file")
        data_name = sidecar.get("external_data")
        if data_name and not (folder / data_name).is_file():
            raise Awq2TrtError(
                folder / data_name, expected=f"the external weight file {model_path.name} refers to", got="no such file"
            )
        options = ort.SessionOptions()
        options.log_severity_level = 3  # fp16 graphs make ORT list every node it cannot constant-fold
        if threads is not None:
            if threads < 1:
                raise Awq2TrtError("threads", expected="an integer >= 1", got=threads)
            options.intra_op_num_threads = threads
        try:
            session = ort.InferenceSession(
                str(model_path), options, providers=list(providers or ["CPUExecutionProvider"])
            )
        except Exception as error:  # ORT raises its own types with multi-line messages; report one line
            detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise Awq2TrtError(model_path, detail=f"ONNX Runtime could not load it: {detail[:300]}") from None
        _check_io(sidecar, session, folder / SIDECAR_FILE)
        tokenizer = None
        if (folder / TOKENIZER_FILE).is_file():
            from tokenizers import Tokenizer

            try:
                tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
            except Exception as error:
                raise Awq2TrtError(folder / TOKENIZER_FILE, detail=f"cannot be read: {error}") from None
        return cls(folder, sidecar, session, tokenizer)

    # -- text ---------------------------------------------------------------------------------------------------

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        """Token ids of *text*; ``add_special_tokens=False`` skips what the post-processor adds (BOS)."""
        return self._need_tokenizer().encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        return self._need_tokenizer().decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def apply_chat_template(self, messages: Sequence[dict[str, Any]], *, add_generation_prompt: bool = True) -> str:
        """Render the folder's chat template (tokenizer_config.json's ``chat_template`` or chat_template.jinja)."""
        template, config = _chat_template(self.folder)
        from jinja2.exceptions import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str) -> None:
            raise TemplateError(message)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        specials = {key: _token_text(config.get(key)) for key in ("bos_token", "eos_token", "pad_token", "unk_token")}
        try:
            return env.from_string(template).render(
                messages=list(messages), add_generation_prompt=add_generation_prompt, **specials
            )
        except TemplateError as error:
            raise Awq2TrtError("chat template", detail=str(error)) from None

    # -- forward ------------------------------------------------------------------------------------------------

    def _new_cache(self, batch: int, capacity: int) -> ConcatCache | SharedBufferCache:
        """The KV cache this graph's form calls for; *capacity* bounds the sequence for a shared buffer."""
        if self.shared_kv:
            shape = (batch, int(self.sidecar["num_kv_heads"]), capacity, int(self.sidecar["head_dim"]))
            return SharedBufferCache(self.session, self._past, self._outputs[1:], shape, self.dtype, self.device)
        return ConcatCache(self.session, self._past, self._outputs[1:], self._empty_cache(batch)[0])

    def _empty_cache(self, batch: int) -> list[np.ndarray]:
        shape = (batch, self.sidecar["num_kv_heads"], 0, self.sidecar["head_dim"])
        empty = np.zeros(shape, self.dtype)
        return [empty] * len(self._past)

    def _step(
        self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray, cache: list[np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        feeds = {
            "input_ids": ids,
            "attention_mask": mask,
            "position_ids": positions,
            **dict(zip(self._past, cache, strict=True)),
        }
        out = self.session.run(self._outputs, feeds)
        return out[0], out[1:]

    def logits(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Logits [batch, T, vocab] of ids [T] or [batch, T], run from an empty cache (for perplexity windows)."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim == 1:
            ids = ids[None]
        if ids.ndim != 2 or ids.shape[1] == 0:
            raise Awq2TrtError("logits", expected="token ids shaped [T] or [batch, T] with T >= 1", got=ids.shape)
        self._check_ids(ids.ravel(), "logits")
        if self.max_positions and ids.shape[1] > self.max_positions:
            raise Awq2TrtError(
                "logits", expected=f"at most max_position_embeddings = {self.max_positions} tokens", got=ids.shape[1]
            )
        mask = np.ones_like(ids)
        positions = np.broadcast_to(np.arange(ids.shape[1], dtype=np.int64), ids.shape)
        logits, _ = self._step(ids, mask, np.ascontiguousarray(positions), self._empty_cache(ids.shape[0]))
        return logits

    # -- generation ---------------------------------------------------------------------------------------------

    def generate(
        self,
        prompts: Prompt | Sequence[Prompt],
        max_new_tokens: int = 64,
        *,
        sampling: SamplingConfig | None = None,
        stop_at_eos: bool = True,
        on_text: TextCallback | None = None,
    ) -> Generation:
        """Continue one prompt or a batch (padded on the side the cache needs) by up to *max_new_tokens* tokens each.

        A prompt is text (tokenized as is, no special tokens added beyond what tokenizer.json's post-processor
        adds) or a list of token ids.  Rows stop at an EOS id from the sidecar when *stop_at_eos*; the batch stops
        when every row has.  Generation also stops where the sequence would pass max_position_embeddings.
        ``on_text(row, piece)`` receives each row's text as it grows, never half a character.
        """
        start = time.perf_counter()
        sampler = Sampler(sampling or SamplingConfig())
        if max_new_tokens < 0:
            raise Awq2TrtError("max_new_tokens", expected="an integer >= 0", got=max_new_tokens)
        rows = self._prompt_rows(prompts)
        batch, longest = len(rows), max(len(row) for row in rows)
        steps = max_new_tokens
        if self.max_positions:
            steps = min(steps, self.max_positions - longest)
        new: list[list[int]] = [[] for _ in rows]
        reasons = ["length"] * batch
        decoders = [IncrementalDecoder(self._need_tokenizer()) for _ in rows] if on_text else None
        prefill_s = ttft_s = 0.0
        decode_start = time.perf_counter()
        if steps > 0:
            cache = self._new_cache(batch, capacity=longest + steps)
            lengths = np.array([len(row) for row in rows], dtype=np.int64)
            mask = padded_mask(lengths, longest, cache.padding)
            ids = np.full((batch, longest), self.pad_id, dtype=np.int64)
            ids[mask.astype(bool)] = np.concatenate(rows)  # row-major, so each row's ids land in order
            positions = np.clip(np.cumsum(mask, axis=1) - 1, 0, None).astype(np.int64)
            # Each row's last prompt token is the last column, except for right-padded rows of different lengths.
            ragged_right = cache.padding == "right" and bool((lengths != longest).any())
            feeds = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
            if self._can_keep_last and longest > 1:
                feeds["num_logits_to_keep"] = _KEEP_ALL if ragged_right else _KEEP_LAST
            t0 = time.perf_counter()
            logits = cache.prefill(feeds, lengths)
            prefill_s = time.perf_counter() - t0
            last = logits[np.arange(batch), lengths - 1] if ragged_right else logits[:, -1]
            # Plain Python lists between steps: each numpy call here costs ~10 us once a step's weights have
            # flushed the caches, and decode runs one step per token.
            active = list(range(batch))
            stops = self.eos_ids if stop_at_eos else frozenset()
            for step in range(steps):
                token = sampler(last)
                if step == 0:
                    ttft_s = time.perf_counter() - start
                    decode_start = time.perf_counter()
                picked = token.tolist()
                still = []
                for r in active:
                    new[r].append(picked[r])
                    if decoders and (piece := decoders[r].push(picked[r])):
                        on_text(r, piece)
                    if picked[r] in stops:
                        reasons[r] = "eos"
                    else:
                        still.append(r)
                active = still
                if not active or step == steps - 1:
                    break
                last = cache.step(token)
        if decoders:
            for r, decoder in enumerate(decoders):
                if piece := decoder.finish():
                    on_text(r, piece)
        end = time.perf_counter()
        texts = [self.decode(row) for row in new] if self.tokenizer is not None else [None] * batch
        timing = Timing(
            prefill_s=prefill_s,
            ttft_s=ttft_s,
            decode_s=end - decode_start if steps > 0 else 0.0,
            decode_tokens=sum(max(len(row) - 1, 0) for row in new),
            total_s=end - start,
        )
        return Generation([list(map(int, row)) for row in rows], new, texts, reasons, timing)

    # -- helpers ------------------------------------------------------------------------------------------------

    def _need_tokenizer(self) -> Any:
        if self.tokenizer is None:
            raise Awq2TrtError(
                self.folder / TOKENIZER_FILE, expected="a tokenizer for text prompts or output", got="no such file"
            )
        return self.tokenizer

    def _check_ids(self, ids: np.ndarray, where: str) -> None:
        bad = ids[(ids < 0) | (ids >= self.vocab_size)]
        if bad.size:
            raise Awq2TrtError(where, expected=f"token ids in [0, {self.vocab_size})", got=int(bad[0]))

    def _prompt_rows(self, prompts: Prompt | Sequence[Prompt]) -> list[list[int]]:
        if isinstance(prompts, str) or _is_id_list(prompts):
            prompts = [prompts]
        rows = []
        for index, prompt in enumerate(prompts):
            where = f"prompt {index}"
            if isinstance(prompt, str):
                row = self.encode(prompt)
            elif _is_id_list(prompt):
                row = [int(i) for i in np.asarray(prompt, dtype=np.int64).ravel()]
            else:
                raise Awq2TrtError(where, expected="text or a list of token ids", got=type(prompt).__name__)
            if not row:
                raise Awq2TrtError(where, expected="at least one token", got="an empty prompt")
            if self.max_positions and len(row) > self.max_positions:
                raise Awq2TrtError(
                    where, expected=f"at most max_position_embeddings = {self.max_positions} tokens", got=len(row)
                )
            self._check_ids(np.asarray(row, dtype=np.int64), where)
            rows.append(row)
        return rows


def _is_id_list(value: object) -> bool:
    if isinstance(value, np.ndarray):
        return value.ndim == 1 and np.issubdtype(value.dtype, np.integer)
    return isinstance(value, (list, tuple)) and all(isinstance(v, (int, np.integer)) for v in value)


def _read_sidecar(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise Awq2TrtError(path, expected="the sidecar `awq2trt export` writes beside model.onnx", got="no such file")
    try:
        sidecar = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise Awq2TrtError(path, expected="readable JSON", got=str(error)) from None
    if not isinstance(sidecar, dict) or sidecar.get("format") != SIDECAR_FORMAT:
        got = sidecar.get("format") if isinstance(sidecar, dict) else type(sidecar).__name__
        raise Awq2TrtError(path, expected=f'"format": "{SIDECAR_FORMAT}"', got=got)
    required = ("model", "dtype", "num_layers", "num_kv_heads", "head_dim", "vocab_size", "inputs", "outputs")
    missing = [key for key in required if key not in sidecar]
    if missing:
        raise Awq2TrtError(path, expected="keys " + ", ".join(required), got="missing " + ", ".join(missing))
    if sidecar["dtype"] not in _NUMPY_TYPES:
        raise Awq2TrtError(path, expected='"dtype" float32 or float16', got=sidecar["dtype"])
    return sidecar


def _check_io(sidecar: dict[str, Any], session: ort.InferenceSession, path: Path) -> None:
    layers = int(sidecar["num_layers"])
    kv = [f"{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
    expected = {
        "inputs": ["input_ids", "attention_mask", "position_ids", *(f"past_key_values.{n}" for n in kv)],
        "outputs": ["logits", *(f"present.{n}" for n in kv)],
    }
    if "num_logits_to_keep" in sidecar.get("inputs", {}):
        expected["inputs"].append("num_logits_to_keep")
    # An input with a default value is an "overridable initializer" to ONNX Runtime, not a plain input.
    actual = {
        "inputs": [*session.get_inputs(), *session.get_overridable_initializers()],
        "outputs": session.get_outputs(),
    }
    for side in ("inputs", "outputs"):
        declared = sidecar[side]
        if not isinstance(declared, dict) or set(declared) != set(expected[side]):
            names = set(declared) if isinstance(declared, dict) else set()
            raise Awq2TrtError(
                path,
                expected=f"{side} for num_layers = {layers}",
                got=_difference(names, set(expected[side])),
            )
        graph = {arg.name: arg for arg in actual[side]}
        if set(graph) != set(declared):
            raise Awq2TrtError(
                path, expected=f"the {side} of {sidecar['model']}", got=_difference(set(declared), set(graph))
            )
        for name, spec in declared.items():
            got = _ORT_TYPES.get(graph[name].type, graph[name].type)
            if spec.get("dtype") != got:
                raise Awq2TrtError(path, expected=f"{name} of {sidecar['model']} as {spec.get('dtype')}", got=got)


def _difference(declared: set[str], actual: set[str]) -> str:
    parts = []
    if extra := sorted(declared - actual):
        parts.append("unknown " + ", ".join(extra))
    if missing := sorted(actual - declared):
        parts.append("missing " + ", ".join(missing))
    return "; ".join(parts)


def _chat_template(folder: Path) -> tuple[str, dict[str, Any]]:
    config: dict[str, Any] = {}
    config_path = folder / TOKENIZER_CONFIG_FILE
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise Awq2TrtError(config_path, expected="readable JSON", got=str(error)) from None
    template = config.get("chat_template")
    if isinstance(template, list):  # [{"name": ..., "template": ...}]: the default one
        named = {item.get("name"): item.get("template") for item in template if isinstance(item, dict)}
        template = named.get("default")
    if not template and (folder / CHAT_TEMPLATE_FILE).is_file():
        template = (folder / CHAT_TEMPLATE_FILE).read_text()
    if not isinstance(template, str) or not template:
        raise Awq2TrtError(
            folder, expected=f"a chat template ({TOKENIZER_CONFIG_FILE} or {CHAT_TEMPLATE_FILE})", got="none"
        )
    return template, config


def _token_text(value: object) -> str:
    if isinstance(value, dict):
        return str(value.get("content", ""))
    return "" if value is None else str(value)
