"""The ONNX parser's errors, one line each in awq2trt's error form, and the exception that carries them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from awq2trt.errors import Awq2TrtError


class ParserErrorLike(Protocol):
    """What ``tensorrt.ParserError`` offers (10.x and 11.x) that a report needs."""

    def desc(self) -> str: ...
    def node(self) -> int: ...
    def node_name(self) -> str: ...
    def node_operator(self) -> str: ...


def parser_error_line(model: str | Path, error: ParserErrorLike) -> str:
    """``model.onnx: node 12 layers.0/attn/MatMul (MatMul): <what the parser said>``; the node part only when
    the parser named one (errors about the file itself have node -1 and empty names)."""
    where = [str(model)]
    index, name, operator = error.node(), error.node_name(), error.node_operator()
    if index >= 0 or name:
        node = "node" + (f" {index}" if index >= 0 else "") + (f" {name}" if name else "")
        where.append(node + (f" ({operator})" if operator else ""))
    elif operator:
        where.append(f"operator {operator}")
    return str(Awq2TrtError(": ".join(where), detail=error.desc() or "the parser gave no reason"))


class OnnxParseError(Awq2TrtError):
    """TensorRT's ONNX parser refused the graph: ``lines`` holds one line per parser error, node by node."""

    def __init__(self, model: str | Path, lines: Sequence[str]) -> None:
        self.lines = tuple(lines) or (f"{model}: TensorRT's ONNX parser failed without saying why",)
        more = f" (and {len(self.lines) - 1} more parser errors)" if len(self.lines) > 1 else ""
        super().__init__(self.lines[0] + more)
