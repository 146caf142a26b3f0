"""Check an exported ``model.onnx`` before a native loader (ONNX Runtime, TensorRT's parser) reads it.

Those loaders open the external-data files a graph names themselves, outside Python, and trust what they read:
a tampered graph could make them read ``../secret`` or an absolute path, or map a truncated weight file.  This
reads the graph's protobuf (no ``onnx`` import: serving environments lack it), and checks that every tensor
stored outside the graph lies in a file inside the exported folder and within that file's size, and that the
graph's inputs and outputs are the ones the sidecar declares, with its KV-cache dims.  The result is one
``Awq2TrtError`` naming the file and the field, before anything large is allocated.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from awq2trt.errors import Awq2TrtError
from awq2trt.sidecar import SIDECAR_FILE, Sidecar, name_difference

MAX_GRAPH_BYTES = 1 << 31  # protobuf's own limit for one message; the weights live in the external data
_MAX_DEPTH = 32  # subgraphs nested in attributes; exports have none, a hostile file could nest without end

# TensorProto.DataType -> bits per element (the types an exported graph can hold)
_ELEMENT_BITS = {1: 32, 2: 8, 3: 8, 4: 16, 5: 16, 6: 32, 7: 64, 9: 8, 10: 16, 11: 64, 12: 32, 13: 64, 16: 16}
_ELEMENT_BITS |= {17: 8, 18: 8, 19: 8, 20: 8, 21: 4, 22: 4, 23: 4}
_ONNX_TYPES = {1: "float32", 10: "float16", 7: "int64", 6: "int32"}


@dataclass
class ValueInfo:
    name: str
    elem_type: int = 0
    dims: list[int | str] = field(default_factory=list)


@dataclass
class ExternalTensor:
    name: str
    data_type: int
    dims: list[int]
    entries: dict[str, str]


@dataclass
class GraphFile:
    inputs: list[ValueInfo] = field(default_factory=list)
    outputs: list[ValueInfo] = field(default_factory=list)
    external: list[ExternalTensor] = field(default_factory=list)


class _Malformed(Exception):
    pass


def check_graph_file(folder: Path, sidecar: Sidecar) -> GraphFile:
    """Check ``FOLDER/<sidecar.model>`` and the external data it names (see the module doc)."""
    root = folder.resolve()
    model_path = folder / sidecar.model
    _inside(model_path, root, model_path, "the model file")
    size = model_path.stat().st_size
    if size > MAX_GRAPH_BYTES:
        raise Awq2TrtError(model_path, expected=f"an ONNX graph of at most {MAX_GRAPH_BYTES} bytes", got=size)
    try:
        graph = read_graph_file(model_path.read_bytes())
    except _Malformed as error:
        raise Awq2TrtError(model_path, expected="an ONNX model (protobuf)", got=str(error)) from None
    sizes: dict[Path, int] = {}
    for tensor in graph.external:
        _check_external(tensor, model_path, root, sizes)
    _check_io(graph, sidecar, folder / SIDECAR_FILE, model_path.name)
    return graph


def _inside(path: Path, root: Path, where: Path | str, what: str) -> Path:
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise Awq2TrtError(where, expected=f"{what} inside the exported folder", got=f"a link to {resolved}")
    if not resolved.is_file():
        raise Awq2TrtError(where, expected=f"{what} as a regular file", got="no such file")
    return resolved


def _check_external(tensor: ExternalTensor, model_path: Path, root: Path, sizes: dict[Path, int]) -> None:
    where = f"{model_path}: initializer {tensor.name[:100]}"
    location = tensor.entries.get("location", "")
    if not location or os.path.isabs(location) or ".." in Path(location).parts or "\0" in location:
        raise Awq2TrtError(where, expected="external data in a file of the exported folder", got=repr(location[:200]))
    data = _inside(root / location, root, where, f"its external data {location!r}")
    if data not in sizes:
        sizes[data] = data.stat().st_size
    available = sizes[data]
    offset = _number(tensor.entries.get("offset", "0"), where, "offset")
    length = tensor.entries.get("length")
    stored = _number(length, where, "length") if length is not None else available - offset
    bits = _ELEMENT_BITS.get(tensor.data_type)
    if bits is not None and all(d >= 0 for d in tensor.dims):
        needed = math.ceil(math.prod(tensor.dims) * bits / 8)
        if stored != needed:
            raise Awq2TrtError(where, expected=f"{needed} bytes for dims {tensor.dims}", got=f"{stored} bytes")
    if offset + stored > available:
        raise Awq2TrtError(
            data,
            expected=f"at least {offset + stored} bytes (initializer {tensor.name[:100]} ends there)",
            got=f"{available} bytes (a truncated weight file)",
        )


def _number(text: str, where: str, key: str) -> int:
    if not text.isdigit() or len(text) > 19:
        raise Awq2TrtError(where, expected=f"external data {key} as a byte count", got=repr(text[:40]))
    return int(text)


def _check_io(graph: GraphFile, sidecar: Sidecar, where: Path, model_name: str) -> None:
    """Names and element types as declared; the KV cache dims the runtime allocates with are the graph's."""
    for side, infos, declared in (
        ("inputs", graph.inputs, sidecar.inputs),
        ("outputs", graph.outputs, sidecar.outputs),
    ):
        names = {info.name for info in infos}
        if names != set(declared):
            raise Awq2TrtError(where, expected=f"the {side} of {model_name}", got=name_difference(set(declared), names))
        for info in infos:
            dtype = _ONNX_TYPES.get(info.elem_type, f"ONNX type {info.elem_type}")
            wanted = declared[info.name].dtype
            if dtype != wanted:
                raise Awq2TrtError(where, expected=f"{info.name} of {model_name} as {wanted}", got=dtype)
    past = set(sidecar.past_names())
    for info in graph.inputs:
        if info.name in past and len(info.dims) == 4:
            for index, key in ((1, "num_kv_heads"), (3, "head_dim")):
                dim = info.dims[index]
                value = getattr(sidecar, key)
                if isinstance(dim, int) and dim != value:
                    raise Awq2TrtError(where, expected=f"{key} = {dim}, as {info.name} of {model_name}", got=value)


# -- protobuf ----------------------------------------------------------------------------------------------------
# Field numbers from onnx.proto (ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto, ValueInfoProto).


def read_graph_file(data: bytes) -> GraphFile:
    """The IO and the external tensors of a serialized ModelProto; ``_Malformed`` when it is not one."""
    out = GraphFile()
    view = memoryview(data)
    seen_graph = False
    for number, value in _fields(view):
        if number == 7 and isinstance(value, memoryview):  # graph
            _graph(value, out, 0, top=True)
            seen_graph = True
        elif number == 25 and isinstance(value, memoryview):  # functions: their nodes may hold tensors
            for n, v in _fields(value):
                if n == 7 and isinstance(v, memoryview):
                    _node(v, out, 1)
    if not seen_graph:
        raise _Malformed("no graph")
    return out


def _graph(view: memoryview, out: GraphFile, depth: int, *, top: bool = False) -> None:
    if depth > _MAX_DEPTH:
        raise _Malformed(f"subgraphs nested deeper than {_MAX_DEPTH}")
    for number, value in _fields(view):
        if not isinstance(value, memoryview):
            continue
        if number == 1:
            _node(value, out, depth)
        elif number == 5:
            _tensor(value, out)
        elif number == 15:  # sparse initializer: values and indices are tensors
            for n, v in _fields(value):
                if n in (1, 2) and isinstance(v, memoryview):
                    _tensor(v, out)
        elif top and number in (11, 12):
            (out.inputs if number == 11 else out.outputs).append(_value_info(value))


def _node(view: memoryview, out: GraphFile, depth: int) -> None:
    for number, value in _fields(view):
        if number != 5 or not isinstance(value, memoryview):  # attribute
            continue
        for n, v in _fields(value):
            if not isinstance(v, memoryview):
                continue
            if n in (5, 10):  # t, tensors
                _tensor(v, out)
            elif n in (6, 11):  # g, graphs
                _graph(v, out, depth + 1)
            elif n in (22, 23):  # sparse_tensor(s)
                for m, w in _fields(v):
                    if m in (1, 2) and isinstance(w, memoryview):
                        _tensor(w, out)


def _tensor(view: memoryview, out: GraphFile) -> None:
    dims: list[int] = []
    data_type, name, location, entries = 0, "", 0, {}
    for number, value in _fields(view):
        if number == 1:
            dims.extend(_ints(value))
        elif number == 2 and isinstance(value, int):
            data_type = value
        elif number == 8 and isinstance(value, memoryview):
            name = _text(value)
        elif number == 13 and isinstance(value, memoryview):
            pair = {n: _text(v) for n, v in _fields(value) if n in (1, 2) and isinstance(v, memoryview)}
            entries[pair.get(1, "")] = pair.get(2, "")
        elif number == 14 and isinstance(value, int):
            location = value
    if location == 1 or entries:  # EXTERNAL (a loader reads entries it finds even without the flag)
        out.external.append(ExternalTensor(name, data_type, dims, entries))


def _value_info(view: memoryview) -> ValueInfo:
    info = ValueInfo("")
    for number, value in _fields(view):
        if number == 1 and isinstance(value, memoryview):
            info.name = _text(value)
        elif number == 2 and isinstance(value, memoryview):  # TypeProto
            for n, v in _fields(value):
                if n == 1 and isinstance(v, memoryview):  # tensor_type
                    for m, w in _fields(v):
                        if m == 1 and isinstance(w, int):
                            info.elem_type = w
                        elif m == 2 and isinstance(w, memoryview):  # shape
                            info.dims = [_dim(d) for k, d in _fields(w) if k == 1 and isinstance(d, memoryview)]
    return info


def _dim(view: memoryview) -> int | str:
    for number, value in _fields(view):
        if number == 1 and isinstance(value, int):
            return value
        if number == 2 and isinstance(value, memoryview):
            return _text(value)
    return ""


def _ints(value: int | memoryview) -> Iterator[int]:
    if isinstance(value, int):
        yield _signed(value)
        return
    pos = 0
    while pos < len(value):  # packed repeated int64
        number, pos = _varint(value, pos)
        yield _signed(number)


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _text(view: memoryview) -> str:
    return bytes(view).decode("utf-8", "replace")


def _fields(view: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """(field number, value) of one message: varints and fixed-width values as int, the rest as a slice."""
    pos, end = 0, len(view)
    while pos < end:
        key, pos = _varint(view, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(view, pos)
            yield number, value
        elif wire == 2:
            length, pos = _varint(view, pos)
            if pos + length > end:
                raise _Malformed(f"a field of {length} bytes past the end of its message")
            yield number, view[pos : pos + length]
            pos += length
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if pos + width > end:
                raise _Malformed("a fixed-width field past the end of its message")
            yield number, int.from_bytes(view[pos : pos + width], "little")
            pos += width
        else:
            raise _Malformed(f"wire type {wire} at byte {pos}")


def _varint(view: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(view) or shift > 63:
            raise _Malformed("a truncated or overlong varint")
        byte = view[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
