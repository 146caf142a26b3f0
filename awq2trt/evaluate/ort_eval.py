"""Perplexity of an exported folder in ONNX Runtime, with the same protocol (and numbers) as the reference."""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from awq2trt.evaluate.perplexity import PerplexityResult, perplexity, window_spans
from awq2trt.evaluate.text import read_text
from awq2trt.runtime.session import OrtModel


def ort_text_perplexity(
    model: OrtModel, text_file: str | Path, *, window: int = 512, stride: int = 512, show: bool = True
) -> PerplexityResult:
    """No BOS is added, as in the reference's ``text_perplexity``, so the two report comparable figures."""
    ids = model.encode(read_text(text_file), add_special_tokens=False)
    total = len(window_spans(len(ids), window, stride))
    with tqdm(total=total, desc="perplexity", disable=not show, leave=False) as bar:
        return perplexity(ids, model.logits, window=window, stride=stride, progress=bar.update)
