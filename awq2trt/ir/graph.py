"""onnx_ir helpers that every graph pass and lowering needs: finding producers and constants, replacing values.

All of them work on ``onnx_ir`` objects and never read weight data they do not need: ``constant`` reads a
value's tensor, which for a lazy initializer means decoding it, so call it on small values only (shapes,
scalars, perms), as the passes do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from awq2trt.ir import io_names

MS_DOMAIN = "com.microsoft"  # ONNX Runtime's contrib ops
STANDARD_DOMAINS = ("", "ai.onnx")


def producer(value: Any, *op_types: str, domains: tuple[str, ...] = STANDARD_DOMAINS) -> Any:
    """The node computing *value* if it is one of *op_types* in one of *domains* (standard ops by default)."""
    node = value.producer() if value is not None else None
    if node is None or node.op_type not in op_types or node.domain not in domains:
        return None
    return node


def only_consumer(value: Any) -> Any:
    """The single node reading *value* (None if several read it or it is a graph output)."""
    uses = list(value.uses())
    return uses[0][0] if len(uses) == 1 and not value.is_graph_output() else None


def constant(value: Any) -> np.ndarray | None:
    """The value of an initializer or a ``Constant`` node's output as numpy, else None."""
    if value is None:
        return None
    tensor = value.const_value
    if tensor is None and (node := producer(value, "Constant")) is not None:
        attr = node.attributes.get("value")
        tensor = attr.as_tensor() if attr is not None else None
    return None if tensor is None else tensor.numpy()


def scalar(value: Any) -> float | None:
    """A one-element constant as a float, else None."""
    array = constant(value)
    return float(array.reshape(-1)[0]) if array is not None and array.size == 1 else None


def take_over(old: Any, new: Any, *, suffix: str, graph_outputs: bool = False) -> None:
    """Make *new* replace *old* everywhere and take its name; *old* is renamed ``NAME.SUFFIX``.

    Names matter: graph outputs, the sidecar and per-layer profiles refer to values by name, so a rewrite
    keeps the name on the value that now computes it.  *graph_outputs* also replaces *old* where it is a graph
    output.
    """
    name = old.name
    old.replace_all_uses_with(new, replace_graph_outputs=graph_outputs)
    old.name = f"{name}.{suffix}"  # free the name first: onnx_ir keeps value names unique
    new.name = name


def lazy_initializer(graph: Any, name: str, dtype: Any, shape: tuple[int, ...], make: Callable[[], Any]) -> Any:
    """Register a new initializer whose data ``make()`` computes only when the model is saved."""
    import onnx_ir as ir

    def materialize() -> Any:
        return ir.Tensor(np.ascontiguousarray(make()), name=name)

    tensor = ir.LazyTensor(materialize, dtype, ir.Shape(shape), name=name)
    value = ir.Value(name=name, shape=ir.Shape(shape), type=ir.TensorType(dtype), const_value=tensor)
    graph.register_initializer(value)
    return value


def remap_initializer(value: Any, shape: tuple[int, ...], transform: Callable[[np.ndarray], np.ndarray]) -> None:
    """Give initializer *value* (same name, same dtype) a new shape and data that ``transform`` computes from its
    current data, lazily: when the model is saved."""
    import onnx_ir as ir

    source = value.const_value
    dtype = source.dtype

    def materialize() -> Any:
        return ir.Tensor(np.ascontiguousarray(transform(source.numpy())), name=value.name)

    value.const_value = ir.LazyTensor(materialize, dtype, ir.Shape(shape), name=value.name)
    value.shape = ir.Shape(shape)


def int64_initializer(graph: Any, name: str, values: list[int]) -> Any:
    """Register a small 1-D int64 initializer (shapes, axes, bounds)."""
    import onnx_ir as ir

    value = ir.Value(
        name=name,
        shape=ir.Shape([len(values)]),
        type=ir.TensorType(ir.DataType.INT64),
        const_value=ir.tensor(np.array(values, np.int64), name=name),
    )
    graph.register_initializer(value)
    return value


def logits_matmul(graph: Any) -> Any | None:
    """The standard MatMul that produces the graph's ``logits`` output (the output head), or None."""
    logits = next((v for v in graph.outputs if v.name == io_names.LOGITS), None)
    head = logits.producer() if logits is not None else None
    if head is None or head.op_type != "MatMul" or head.domain not in STANDARD_DOMAINS:
        return None
    return head


def node_count(model: Any) -> int:
    """Nodes of the main graph (function bodies are not what a runtime plans)."""
    return sum(1 for _ in model.graph)
