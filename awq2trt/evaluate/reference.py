"""Drive the PyTorch reference model: perplexity on a text file and greedy chat generation."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from awq2trt.errors import Awq2TrtError
from awq2trt.evaluate.perplexity import PerplexityResult, perplexity, window_spans
from awq2trt.evaluate.text import read_text


def load_tokenizer(folder: str | Path) -> Any:
    from transformers import AutoTokenizer

    folder = Path(folder)
    if not (folder / "tokenizer.json").is_file() and not (folder / "tokenizer.model").is_file():
        raise Awq2TrtError(folder, expected="tokenizer.json (or tokenizer.model) beside the weights", got="none")
    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


def torch_logits_fn(model: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    def run(ids: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(ids), use_cache=False).logits.float().numpy()

    return run


def text_perplexity(
    model: torch.nn.Module,
    tokenizer: Any,
    text_file: str | Path,
    *,
    window: int = 512,
    stride: int = 512,
    show: bool = True,
) -> PerplexityResult:
    ids = tokenizer(read_text(text_file), add_special_tokens=False)["input_ids"]
    total = len(window_spans(len(ids), window, stride))
    with tqdm(total=total, desc="perplexity", disable=not show, leave=False) as bar:
        return perplexity(ids, torch_logits_fn(model), window=window, stride=stride, progress=bar.update)


@dataclass(frozen=True)
class Generation:
    text: str
    new_tokens: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else float("nan")


def chat_generate(
    model: torch.nn.Module,
    tokenizer: Any,
    prompt: str,
    *,
    max_new_tokens: int = 64,
    stream: Callable[[str], None] | None = None,
) -> Generation:
    """Greedy answer to one user message, using the tokenizer's chat template when it has one."""
    if not prompt.strip():
        raise Awq2TrtError("--prompt", expected="a non-empty prompt", got="an empty string")
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )["input_ids"]
    else:
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    streamer = None
    if stream is not None:
        from transformers import TextStreamer

        class _Callback(TextStreamer):
            def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
                stream(text)

        streamer = _Callback(tokenizer, skip_prompt=True, skip_special_tokens=True)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            streamer=streamer,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        )
    seconds = time.perf_counter() - start
    new = out[0, ids.shape[1] :]
    return Generation(tokenizer.decode(new, skip_special_tokens=True), int(new.numel()), seconds)
