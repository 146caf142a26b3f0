"""What TensorRT's ONNX parser accepts, as data (``trt_support.json``), and the check every ``trt`` export passes.

The table lists, per TensorRT version we target, the ONNX ops the parser implements, the data types each op's
data tensor may have, and the op restrictions the parser's documentation states, each restriction written as one
rule of a small vocabulary (``RULES`` below).  Its sources are named in the table, per version.

``violations`` walks every node of a model (subgraphs of If/Loop/Scan and model-local functions included) with
ONNX shape inference's types and ranks and returns each problem; ``require_supported`` raises the first one as an
``Awq2TrtError``.  The model is read without its external data: the rules need types, shapes and small constants
only, and a 7B export's weights must not be loaded to check a graph.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from awq2trt.errors import Awq2TrtError

TABLE_FILE = "trt_support.json"
STANDARD_DOMAINS = frozenset({"", "ai.onnx"})
DEFAULT_TYPED = ("in0",)  # the table's "Supported Types" name an op's data input unless the entry says otherwise


@dataclass(frozen=True)
class Violation:
    """One thing the TensorRT parser of ``version`` would reject, at one node."""

    version: str
    node: str
    op_type: str
    expected: str
    got: str

    def __str__(self) -> str:
        return f"TensorRT {self.version}: node {self.node!r} ({self.op_type}): expected {self.expected}, got {self.got}"


@cache
def load_table() -> dict[str, Any]:
    """The support table shipped in the package."""
    return json.loads(resources.files("awq2trt.targets").joinpath(TABLE_FILE).read_text(encoding="utf-8"))


def versions() -> list[str]:
    """Every TensorRT version the table covers: an export must pass all of them."""
    return list(load_table()["versions"])


def dtype_set(names: Iterable[str]) -> frozenset[str]:
    """Data type names with the table's ``@group`` shorthands expanded."""
    groups = load_table()["dtype_groups"]
    out: set[str] = set()
    for name in names:
        out.update(groups[name[1:]] if name.startswith("@") else [name])
    return frozenset(out)


def _dtype_name(elem_type: int) -> str:
    return onnx.TensorProto.DataType.Name(elem_type)


@dataclass
class _Scope:
    """What is known about the values one graph (or function body) sees; subgraphs look outward through parent."""

    types: dict[str, int] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)
    constants: dict[str, onnx.TensorProto] = field(default_factory=dict)  # initializers and Constant outputs
    producers: dict[str, onnx.NodeProto] = field(default_factory=dict)
    parent: _Scope | None = None
    folded: dict[str, bool] = field(default_factory=dict)  # build-time-constant answers, memoized

    def _find(self, table: str, name: str) -> Any:
        scope: _Scope | None = self
        while scope is not None:
            if name in getattr(scope, table):
                return getattr(scope, table)[name]
            scope = scope.parent
        return None

    def dtype(self, name: str) -> int | None:
        return self._find("types", name)

    def rank(self, name: str) -> int | None:
        return self._find("ranks", name)

    def constant(self, name: str) -> onnx.TensorProto | None:
        return self._find("constants", name)

    def is_build_time_constant(self, name: str) -> bool:
        """A constant, or computed only from constants (what the parser can fold); Shape of anything is not."""
        if self.constant(name) is not None:
            return True
        if name in self.folded:
            return self.folded[name]
        node = self._find("producers", name)
        self.folded[name] = False  # a cycle cannot be constant; also guards the recursion
        result = (
            node is not None
            and node.op_type not in ("Shape", "Size")
            and all(not i or self.is_build_time_constant(i) for i in node.input)
        )
        self.folded[name] = result
        return result


def _record_value(scope: _Scope, value: onnx.ValueInfoProto) -> None:
    tensor = value.type.tensor_type
    if value.type.HasField("tensor_type") and tensor.elem_type:
        scope.types[value.name] = tensor.elem_type
        if tensor.HasField("shape"):
            scope.ranks[value.name] = len(tensor.shape.dim)


def _constant_tensor(node: onnx.NodeProto) -> onnx.TensorProto | None:
    attributes = {a.name: a for a in node.attribute}
    return attributes["value"].t if "value" in attributes else None


def _graph_scope(graph: onnx.GraphProto, parent: _Scope | None) -> _Scope:
    scope = _Scope(parent=parent)
    for value in (*graph.input, *graph.output, *graph.value_info):
        _record_value(scope, value)
    for tensor in graph.initializer:
        scope.types[tensor.name] = tensor.data_type
        scope.ranks[tensor.name] = len(tensor.dims)
        scope.constants[tensor.name] = tensor
    for node in graph.node:
        for output in node.output:
            if output:
                scope.producers[output] = node
        if node.op_type == "Constant" and node.domain in STANDARD_DOMAINS and node.output:
            tensor = _constant_tensor(node)
            if tensor is not None:
                scope.types[node.output[0]] = tensor.data_type
                scope.ranks[node.output[0]] = len(tensor.dims)
                scope.constants[node.output[0]] = tensor
    return scope


# --- the rule vocabulary: each returns (expected, got) when the node breaks the rule, None otherwise ---

Problem = tuple[str, str] | None


@dataclass(frozen=True)
class _Context:
    node: onnx.NodeProto
    scope: _Scope
    base_dir: Path | None

    def input(self, index: int) -> str:
        return self.node.input[index] if index < len(self.node.input) else ""

    def tensor(self, ref: str) -> str:
        """'in3' / 'out0' -> that input's / output's name ('' when absent)."""
        names = self.node.input if ref.startswith("in") else self.node.output
        index = int(ref[2:] if ref.startswith("in") else ref[3:])
        return names[index] if index < len(names) else ""

    def attribute(self, name: str, default: Any = None) -> Any:
        for attribute in self.node.attribute:
            if attribute.name == name:
                return onnx.helper.get_attribute_value(attribute)
        return default


def _label(rule: dict[str, Any], index: int) -> str:
    return f"{rule['name']} (input {index})" if rule.get("name") else f"input {index}"


def _initializer_input(rule: dict[str, Any], ctx: _Context) -> Problem:
    name = ctx.input(rule["input"])
    if not name or ctx.scope.constant(name) is not None:  # Constant nodes become weights in the parser, too
        return None
    return f"{_label(rule, rule['input'])} to be an initializer", f"{name!r} computed in the graph"


def _constant_input(rule: dict[str, Any], ctx: _Context) -> Problem:
    name = ctx.input(rule["input"])
    if not name or ctx.scope.is_build_time_constant(name):
        return None
    return f"{_label(rule, rule['input'])} to be a build-time constant", f"{name!r} depends on graph inputs"


def _constant_values(tensor: onnx.TensorProto, base_dir: Path | None) -> np.ndarray | None:
    """A constant's values; external data only with a folder to read it from (zero points are small)."""
    external = tensor.data_location == onnx.TensorProto.EXTERNAL
    if external and base_dir is None:
        return None
    return numpy_helper.to_array(tensor, str(base_dir) if external else "")


def _zero_point_zero(rule: dict[str, Any], ctx: _Context) -> Problem:
    name = ctx.input(rule["input"])
    if not name:
        return None
    expected = f"{_label(rule, rule['input'])} absent or a constant of zeros"
    tensor = ctx.scope.constant(name)
    if tensor is None:
        return expected, f"{name!r} computed in the graph"
    values = _constant_values(tensor, ctx.base_dir)
    if values is None:
        return expected, f"{name!r} stored externally, with no folder given to read it"
    nonzero = int(np.count_nonzero(values.astype(np.float32)))
    return None if nonzero == 0 else (expected, f"{nonzero} non-zero value(s) in {name!r}")


def _tensor_dtype(rule: dict[str, Any], ctx: _Context) -> Problem:
    name = ctx.tensor(rule["tensor"])
    dtype = ctx.scope.dtype(name) if name else None
    allowed = dtype_set(rule["dtypes"])
    if dtype is None or _dtype_name(dtype) in allowed:
        return None
    label = rule.get("name") or rule["tensor"]
    return f"{label} of type {'/'.join(sorted(allowed))}", f"{_dtype_name(dtype)} ({name!r})"


def _input_rank(rule: dict[str, Any], ctx: _Context) -> Problem:
    name = ctx.input(rule["input"])
    rank = ctx.scope.rank(name) if name else None
    if rank is None:
        return None
    low, high, ranks = rule.get("min"), rule.get("max"), rule.get("ranks")
    if (ranks and rank not in ranks) or (low is not None and rank < low) or (high is not None and rank > high):
        wanted = f"rank in {ranks}" if ranks else f"rank {'>= ' + str(low) if low is not None else '<= ' + str(high)}"
        return f"{_label(rule, rule['input'])} of {wanted}", f"rank {rank}"
    return None


def _attribute_in(rule: dict[str, Any], ctx: _Context) -> Problem:
    value = ctx.attribute(rule["attribute"], rule["default"])
    if isinstance(value, bytes):
        value = value.decode()
    if value in rule["values"]:
        return None
    return f"attribute {rule['attribute']} in {rule['values']}", repr(value)


def _attribute_all_equal(rule: dict[str, Any], ctx: _Context) -> Problem:
    values = ctx.attribute(rule["attribute"], [])
    if all(v == rule["value"] for v in values):
        return None
    return f"attribute {rule['attribute']} empty or all {rule['value']}", str(list(values))


def _attributes_absent(rule: dict[str, Any], ctx: _Context) -> Problem:
    present = [a.name for a in ctx.node.attribute if a.name in rule["attributes"]]
    return None if not present else (f"none of the attributes {rule['attributes']}", str(present))


def _max_outputs(rule: dict[str, Any], ctx: _Context) -> Problem:
    extra = [name for name in ctx.node.output[rule["count"] :] if name]
    return None if not extra else (f"only the first {rule['count']} output(s)", f"also {extra}")


def _inputs_absent(rule: dict[str, Any], ctx: _Context) -> Problem:
    given = [label for label, index in zip(rule["names"], rule["inputs"], strict=True) if ctx.input(index)]
    return None if not given else (f"no {'/'.join(rule['names'])} input", f"{given} given")


def _weight_only(rule: dict[str, Any], ctx: _Context) -> Problem:
    name = ctx.input(rule["input"])
    dtype = ctx.scope.dtype(name) if name else None
    if dtype is None or _dtype_name(dtype) not in dtype_set(rule["dtypes"]) or ctx.scope.constant(name) is not None:
        return None
    return f"{_label(rule, rule['input'])} of type {_dtype_name(dtype)} to be a weight (initializer)", repr(name)


def _block_quantization(rule: dict[str, Any], ctx: _Context) -> Problem:
    """Blocked (block_size > 0) Q/DQ: a type that has blocks, scale of the input's rank, blocked on a last-two axis."""
    block = ctx.attribute("block_size", 0)
    if not block:
        return None
    x, scale = ctx.input(0), ctx.input(1)
    dtype = ctx.scope.dtype(x)
    allowed = dtype_set(rule["dtypes"])
    if dtype is not None and _dtype_name(dtype) not in allowed:
        return f"block quantization only for {'/'.join(sorted(allowed))}", _dtype_name(dtype)
    rank, scale_rank = ctx.scope.rank(x), ctx.scope.rank(scale)
    if rank is None:
        return None
    if scale_rank is not None and scale_rank != rank:
        return f"x_scale of the input's rank {rank} for block quantization", f"rank {scale_rank}"
    axis = ctx.attribute("axis", 1)
    axis = axis + rank if axis < 0 else axis
    if axis not in (rank - 1, rank - 2):
        return f"blocking on the last or second-to-last axis of the rank-{rank} input", f"axis {axis}"
    return None


# The vocabulary of the table's "rules" (by "kind"); the tests check that every rule in the table names one of these.
RULES: dict[str, Callable[[dict[str, Any], _Context], Problem]] = {
    "initializer_input": _initializer_input,
    "constant_input": _constant_input,
    "zero_point_zero": _zero_point_zero,
    "tensor_dtype": _tensor_dtype,
    "input_rank": _input_rank,
    "attribute_in": _attribute_in,
    "attribute_all_equal": _attribute_all_equal,
    "attributes_absent": _attributes_absent,
    "max_outputs": _max_outputs,
    "inputs_absent": _inputs_absent,
    "weight_only": _weight_only,
    "block_quantization": _block_quantization,
}


# --- the walk ---


@dataclass(frozen=True)
class _Walk:
    version: str
    spec: dict[str, Any]
    functions: dict[tuple[str, str], onnx.FunctionProto]
    base_dir: Path | None

    def graph(self, graph: onnx.GraphProto, parent: _Scope | None) -> Iterator[Violation]:
        scope = _graph_scope(graph, parent)
        for node in graph.node:
            yield from self.node(node, scope)

    def node(self, node: onnx.NodeProto, scope: _Scope) -> Iterator[Violation]:
        label = node.name or (node.output[0] if node.output else "?")

        def problem(expected: str, got: str) -> Violation:
            return Violation(self.version, label, node.op_type, expected, got)

        if node.domain not in STANDARD_DOMAINS:
            function = self.functions.get((node.domain, node.op_type))
            if function is None:  # the parser would need a plugin registered under this name
                custom = f"{node.domain}::{node.op_type}"
                yield problem("a standard ONNX op (a custom op needs a TensorRT plugin)", custom)
            else:  # the parser inlines model-local functions: their bodies must pass
                yield from self.function(function, node, scope)
            return
        if node.op_type in self.spec["unsupported_ops"]:
            yield problem("an op the parser implements", "one its operator table marks unsupported")
            return
        entry = self.spec["ops"].get(node.op_type)
        if entry is None:
            yield problem("an op in the parser's operator table", "an op it does not list")
            return
        yield from self.dtypes(node, entry, scope, problem)
        ctx = _Context(node, scope, self.base_dir)
        for rule in entry.get("rules", []):
            found = RULES[rule["kind"]](rule, ctx)
            if found is not None:
                yield problem(*found)
        for attribute in node.attribute:  # If / Loop / Scan bodies
            for subgraph in [attribute.g] if attribute.HasField("g") else attribute.graphs:
                yield from self.graph(subgraph, scope)

    def dtypes(
        self, node: onnx.NodeProto, entry: dict[str, Any], scope: _Scope, problem: Callable[[str, str], Violation]
    ) -> Iterator[Violation]:
        parser = dtype_set(self.spec["parser_dtypes"])
        for name in (*node.input, *node.output):
            dtype = scope.dtype(name) if name else None
            if dtype is not None and _dtype_name(dtype) not in parser:
                yield problem("a data type the parser has", f"{_dtype_name(dtype)} ({name!r})")
                return
        allowed = dtype_set(entry["types"])
        ctx = _Context(node, scope, self.base_dir)
        for ref in entry.get("typed", DEFAULT_TYPED):
            name = ctx.tensor(ref)
            dtype = scope.dtype(name) if name else None
            if dtype is not None and _dtype_name(dtype) not in allowed:
                yield problem(f"{ref} of type {'/'.join(sorted(allowed))}", f"{_dtype_name(dtype)} ({name!r})")

    def function(self, function: onnx.FunctionProto, call: onnx.NodeProto, caller: _Scope) -> Iterator[Violation]:
        scope = _Scope(parent=None)
        # a call may leave trailing optional inputs out
        for inner, outer in zip(function.input, call.input, strict=False):
            dtype = caller.dtype(outer) if outer else None
            if dtype is not None:
                scope.types[inner] = dtype
        for node in function.node:
            for output in node.output:
                scope.producers[output] = node
            if node.op_type == "Constant" and node.domain in STANDARD_DOMAINS and node.output:
                tensor = _constant_tensor(node)
                if tensor is not None:
                    scope.constants[node.output[0]] = tensor
                    scope.types[node.output[0]] = tensor.data_type
        for node in function.node:
            yield from self.node(node, scope)


def _model_violations(model: onnx.ModelProto, version: str, spec: dict[str, Any]) -> Iterator[Violation]:
    opset = next((o.version for o in model.opset_import if o.domain in STANDARD_DOMAINS), None)
    low, high = spec["opset"]["min"], spec["opset"]["max"]
    if opset is None or not low <= opset <= high:
        yield Violation(version, model.graph.name, "opset_import", f"ONNX opset {low} to {high}", str(opset))
    io_types = dtype_set(spec["io_dtypes"])
    for kind, values in (("graph input", model.graph.input), ("graph output", model.graph.output)):
        for value in values:
            elem = value.type.tensor_type.elem_type
            if elem and _dtype_name(elem) not in io_types:
                expected = f"a type TensorRT binds ({'/'.join(sorted(io_types))})"
                yield Violation(version, value.name, kind, expected, _dtype_name(elem))


def violations(model: onnx.ModelProto, version: str, *, base_dir: Path | None = None) -> list[Violation]:
    """Everything TensorRT ``version``'s ONNX parser would reject in ``model``, per the table.

    ``base_dir`` is the model's folder, used only to read a (small) external zero-point tensor; weights are never
    read.  Types and ranks come from ONNX shape inference on the graph as stored.
    """
    spec = load_table()["versions"][version]
    inferred = onnx.shape_inference.infer_shapes(model)
    functions = {(f.domain, f.name): f for f in inferred.functions}
    walk = _Walk(version, spec, functions, base_dir)
    return [*_model_violations(inferred, version, spec), *walk.graph(inferred.graph, None)]


def require_supported(
    model: onnx.ModelProto, where: str | Path, *, base_dir: Path | None = None, only: Iterable[str] | None = None
) -> None:
    """Raise the first problem for any targeted TensorRT version (or those in ``only``), naming the node."""
    for version in only or versions():
        found = violations(model, version, base_dir=base_dir)
        if found:
            first = found[0]
            more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
            raise Awq2TrtError(
                f"{where}: node {first.node!r} ({first.op_type}) for TensorRT {version}{more}",
                expected=first.expected,
                got=first.got,
            )


def check_model_file(model_path: Path) -> None:
    """The saved graph against every TensorRT version in the table, without loading its external weights."""
    model = onnx.load(str(model_path), load_external_data=False)
    require_supported(model, model_path.name, base_dir=model_path.parent)
