"""What every backend's model object offers: the folder's tokenizer and chat template, and generation.

``OrtModel`` (an ONNX Runtime session over an exported folder) and ``TrtModel`` (a TensorRT engine built from
one) differ only in the ``StepModel`` they drive and in how they run a whole-window forward (``logits``);
the text side, the chat template and the generation loop are this one class.  Needs only ``tokenizers`` (and
jinja2 for chat templates, imported on first use): nothing here imports onnxruntime, TensorRT or torch.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from awq2trt.errors import Awq2TrtError
from awq2trt.runtime.chat_template import render_chat_template
from awq2trt.runtime.generate import Generation, Prompt, Text, TextCallback, check_ids, generate_tokens
from awq2trt.runtime.sampling import SamplingConfig
from awq2trt.runtime.step import StepModel
from awq2trt.sidecar import Sidecar
from awq2trt.untrusted_json import read_json_file

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
# tokenizer_config.json carries the template (and sometimes the vocabulary's added tokens): a few MB at most.
MAX_TEMPLATE_BYTES = 16 * 1024 * 1024
# Real tokenizer.json files are a few MB (the largest vocabularies about 30 MB); the file is parsed natively whole.
MAX_TOKENIZER_BYTES = 256 * 1024 * 1024


class TextModel(ABC):
    """An exported (or built) folder opened for inference through one backend's ``StepModel``."""

    backend: str  # what reports name the backend ("onnxruntime", "tensorrt")

    def __init__(self, folder: Path, sidecar: Sidecar, steps: StepModel, tokenizer: Any | None) -> None:
        self.folder = folder
        self.sidecar = sidecar
        self.steps = steps
        self.tokenizer = tokenizer
        self.text = Text(tokenizer, folder / TOKENIZER_FILE)
        tokens = steps.tokens
        self.num_layers = sidecar.num_layers
        self.vocab_size = tokens.vocab_size
        self.max_positions = tokens.max_positions
        self.eos_ids = tokens.eos_ids
        self.pad_id = tokens.pad_id

    @abstractmethod
    def model_files(self) -> list[Path]:
        """The files whose bytes the backend loads (the graph and its weights, or the engine)."""

    # -- text ---------------------------------------------------------------------------------------------------

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        """Token ids of *text*; ``add_special_tokens=False`` skips what the post-processor adds (BOS)."""
        return self.text.encode(text, add_special_tokens=add_special_tokens)

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        return self.text.decode(ids, skip_special_tokens=skip_special_tokens)

    def apply_chat_template(self, messages: Sequence[dict[str, Any]], *, add_generation_prompt: bool = True) -> str:
        """Render the folder's chat template (tokenizer_config.json's ``chat_template`` or chat_template.jinja)."""
        return chat_prompt(self.folder, messages, add_generation_prompt=add_generation_prompt)

    # -- forward ------------------------------------------------------------------------------------------------

    def window_ids(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """*ids* [T] or [batch, T] as int64 [batch, T], checked as ``logits`` needs them."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim == 1:
            ids = ids[None]
        if ids.ndim != 2 or ids.shape[1] == 0:
            raise Awq2TrtError("logits", expected="token ids shaped [T] or [batch, T] with T >= 1", got=ids.shape)
        check_ids(ids.ravel(), self.vocab_size, "logits")
        if self.max_positions and ids.shape[1] > self.max_positions:
            raise Awq2TrtError(
                "logits", expected=f"at most max_position_embeddings = {self.max_positions} tokens", got=ids.shape[1]
            )
        return ids

    @abstractmethod
    def logits(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Logits [batch, T, vocab] of ids [T] or [batch, T], run from an empty cache (for perplexity windows)."""

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
        return generate_tokens(
            self.steps,
            self.text,
            prompts,
            max_new_tokens,
            sampling=sampling,
            stop_at_eos=stop_at_eos,
            on_text=on_text,
        )


def load_tokenizer(folder: Path) -> Any | None:
    """The folder's tokenizer.json as a ``tokenizers.Tokenizer``, or None where there is none (ids only)."""
    path = folder / TOKENIZER_FILE
    if not path.is_file():
        return None
    size = path.stat().st_size
    if size > MAX_TOKENIZER_BYTES:  # parsed natively in one piece: refuse before it is read into memory
        raise Awq2TrtError(path, expected=f"a tokenizer file of at most {MAX_TOKENIZER_BYTES >> 20} MB", got=size)
    from tokenizers import Tokenizer

    try:
        with _native_stderr_kept_on_success():
            return Tokenizer.from_file(str(path))
    except Exception as error:
        raise Awq2TrtError(path, detail=f"cannot be read: {_first_line(error)}") from None
    except BaseException as error:
        # The Rust library turns a panic on a malformed file into pyo3's PanicException, which derives from
        # BaseException so that `except Exception` misses it; it is still the file's fault, not ours.
        if type(error).__name__ != "PanicException":
            raise
        raise Awq2TrtError(path, detail=f"cannot be read: {_first_line(error)}") from None


@contextlib.contextmanager
def _native_stderr_kept_on_success() -> Iterator[None]:
    """Hold what native code writes to file descriptor 2 inside the block, and pass it on only if the block
    succeeds: the tokenizer library's panic hook prints a multi-line report there before Python sees the panic,
    and a malformed file must end in our one error line.  Only a tokenizer load runs inside (at start-up)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable descriptor 2 (a daemon): nothing to keep clean
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            os.close(saved)
            raise
        os.dup2(saved, 2)
        os.close(saved)
        held.seek(0)
        if text := held.read():
            sys.stderr.write(text.decode("utf-8", "replace"))
            sys.stderr.flush()


def chat_prompt(folder: Path, messages: Sequence[dict[str, Any]], *, add_generation_prompt: bool = True) -> str:
    """*messages* rendered with *folder*'s chat template, bounded in time and memory (`chat_template`)."""
    template, config = _chat_template(folder)
    specials = {key: _token_text(config.get(key)) for key in ("bos_token", "eos_token", "pad_token", "unk_token")}
    variables = {"messages": list(messages), "add_generation_prompt": add_generation_prompt, **specials}
    return render_chat_template(template, variables)


def _chat_template(folder: Path) -> tuple[str, dict[str, Any]]:
    config: Any = {}
    config_path = folder / TOKENIZER_CONFIG_FILE
    if config_path.is_file():
        config = read_json_file(config_path, max_bytes=MAX_TEMPLATE_BYTES)
        if not isinstance(config, dict):
            raise Awq2TrtError(config_path, expected="a JSON object", got=type(config).__name__)
    template = config.get("chat_template")
    if isinstance(template, list):  # [{"name": ..., "template": ...}]: the default one
        named = {item.get("name"): item.get("template") for item in template if isinstance(item, dict)}
        template = named.get("default")
    template_path = folder / CHAT_TEMPLATE_FILE
    if not template and template_path.is_file():
        raw = template_path.read_bytes()[: MAX_TEMPLATE_BYTES + 1]
        if len(raw) > MAX_TEMPLATE_BYTES:
            raise Awq2TrtError(template_path, expected=f"at most {MAX_TEMPLATE_BYTES} bytes", got="a larger file")
        try:
            template = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Awq2TrtError(template_path, expected="UTF-8 text", got="undecodable bytes") from None
    if not isinstance(template, str) or not template:
        raise Awq2TrtError(
            folder, expected=f"a chat template ({TOKENIZER_CONFIG_FILE} or {CHAT_TEMPLATE_FILE})", got="none"
        )
    return template, config


def _token_text(value: object) -> str:
    if isinstance(value, dict):
        return str(value.get("content", ""))
    return "" if value is None else str(value)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
