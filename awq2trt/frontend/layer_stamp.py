"""Trace three decoder layers, then stamp out the others: the trace stops growing with model depth.

torch.export spends about two seconds per decoder layer of a Llama-family model (most of an export), and
the layers of a model whose blocks are all alike are one computation on different weights.  So the model
is traced with ``TEMPLATE_LAYERS`` layers and the graph of the last one is copied for the rest:

* Layers are told apart by the module scope the exporter records on every node (``layers.{i}``).
* Layer 2 is compared with layer 1 position by position (same ops, same attributes).  Each input of a
  layer-2 node is then one of: a value shared by all layers (the rotary tables, the mask, shape
  arithmetic), a value of layer 2 itself, a value of the previous layer (the residual stream, and shape
  values a layer reuses from the one before), or a per-layer source (an initializer
  ``...layers.2...``, a graph input ``past_key_values.2.*``).  Layer 1 must relate to layer 0 the same
  way; anything else raises `StampMismatch` and the caller traces every layer instead.
* Layer ``k`` is layer 2 with those rules applied: new initializers and past inputs named for ``k``,
  previous-layer values taken from layer ``k - 1``'s copy, ``present.{k}.*`` as graph outputs.  Whatever
  consumed layer 2's values after it (the final norm) now consumes the last copy's.

A checkpoint whose layers differ (per-layer window types, a layer left unquantized, other shapes) is not
stamped: `template_reason` says why, and the exporter traces it whole.
"""

from __future__ import annotations

import ast
import copy
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from awq2trt.checkpoint.reader import Checkpoint

TEMPLATE_LAYERS = 3
SCOPES_KEY = "pkg.torch.onnx.name_scopes"  # the exporter's record of the module stack behind each node
_LAYER_SCOPE = re.compile(r"\.layers\.(\d+)$")
_LAYER_NAME = re.compile(r"(^|\.)layers\.(\d+)\.")
_PAST_NAME = re.compile(r"^(past_key_values|present)\.(\d+)\.(key|value)$")
_COMMUTATIVE = {"Add", "Mul", "Max", "Min", "And", "Or", "Equal"}


class StampMismatch(Exception):
    """The traced layers do not repeat the way stamping needs; the message says where."""


def template_reason(ckpt: Checkpoint, layer_types: list[str] | None) -> str | None:
    """Why *ckpt* cannot be exported from a traced template (None: it can)."""
    layers = int(ckpt.config.get("num_hidden_layers", 0))
    if layers <= TEMPLATE_LAYERS:
        return f"{layers} layers: no more than the template"
    if layer_types and len(set(layer_types)) > 1:
        return f"layers of different attention types ({', '.join(sorted(set(layer_types)))})"
    per_layer: dict[int, dict[str, tuple[Any, ...]]] = defaultdict(dict)
    for name in ckpt.weights.names():
        match = _LAYER_NAME.search(name)
        if match:
            suffix = name[match.end() :]
            per_layer[int(match.group(2))][suffix] = (ckpt.weights.dtype_name(name), tuple(ckpt.weights.shape(name)))
    for name, layout in ckpt.linears.items():
        match = _LAYER_NAME.search(name + ".")
        if match:
            suffix = name[match.end() :] + "#layout"
            per_layer[int(match.group(2))][suffix] = (layout.in_features, layout.out_features, layout.group_size)
    if sorted(per_layer) != list(range(layers)):
        return "tensors for every layer index expected"
    first = per_layer[0]
    for index in range(1, layers):
        if per_layer[index] != first:
            differing = sorted(set(first.items()) ^ set(per_layer[index].items()))
            return f"layer {index} differs from layer 0 ({differing[0][0]})"
    return None


def template_checkpoint(ckpt: Checkpoint, layer_types: list[str] | None) -> Checkpoint:
    """A view of *ckpt* with only its first `TEMPLATE_LAYERS` layers (same folder, same weights)."""
    view = copy.copy(ckpt)
    config = dict(ckpt.config, num_hidden_layers=TEMPLATE_LAYERS)
    if layer_types:
        config["layer_types"] = list(layer_types[:TEMPLATE_LAYERS])
    view.config = config
    view.linears = {
        name: layout
        for name, layout in ckpt.linears.items()
        if (match := _LAYER_NAME.search(name + ".")) is None or int(match.group(2)) < TEMPLATE_LAYERS
    }
    return view


def _scopes(node: Any) -> list[str]:
    scopes = node.metadata_props.get(SCOPES_KEY)
    if scopes is None:
        raise StampMismatch(f"node {node.name} has no {SCOPES_KEY} metadata")
    return list(ast.literal_eval(scopes))


def _scoped_layer(scopes: list[str]) -> int | None:
    for scope in scopes:
        match = _LAYER_SCOPE.search(scope)
        if match:
            return int(match.group(1))
    return None


def _name_layer(name: str | None) -> int | None:
    """The layer a per-layer initializer or cache input/output name belongs to (None: not per-layer)."""
    if not name:
        return None
    past = _PAST_NAME.match(name)
    if past:
        return int(past.group(2))
    match = _LAYER_NAME.search(name)
    return int(match.group(2)) if match else None


def _nodes_by_layer(graph: Any) -> dict[int, list[Any]]:
    """Each layer's nodes in graph order.

    A node belongs to the layer whose module scope it was traced in.  A node traced outside every module
    (the exporter's shape arithmetic, the cache wrapper's plumbing) belongs to a layer when all the
    per-layer values it reads are that layer's and only that layer reads it: the size of
    ``past_key_values.{i}.key`` that layer i's attention adds to the sequence length is layer i's; the batch
    size read off the same tensor for the model's mask is shared by all.
    """
    nodes = list(graph)
    scoped: dict[Any, int] = {}
    absorbed: dict[Any, int] = {}
    for node in nodes:
        scopes = _scopes(node)
        index = _scoped_layer(scopes)
        if index is not None:
            scoped[node] = index
        elif not any(scopes[1:-1]):  # outside every module: the root scope, then the op's own name
            read = set()
            for value in node.inputs:
                if value is None:
                    continue
                producer = value.producer()
                found = scoped.get(producer, absorbed.get(producer)) if producer else _name_layer(value.name)
                if found is not None:
                    read.add(found)
            if len(read) == 1:
                absorbed[node] = read.pop()
    for node in reversed(nodes):  # consumers come later: one backward sweep settles who reads what
        if node in absorbed:
            index = absorbed[node]
            for value in node.outputs:
                readers = {scoped.get(user, absorbed.get(user)) for user, _ in value.uses()}
                if value.is_graph_output() or readers - {index}:
                    del absorbed[node]
                    break
    layers: dict[int, list[Any]] = defaultdict(list)
    for node in nodes:
        index = scoped.get(node, absorbed.get(node))
        if index is not None:
            layers[index].append(node)
    return layers


def _renamed(name: str, old: int, new: int) -> str | None:
    """*name* of layer *old*'s tensor or cache input/output, for layer *new* (None: not a per-layer name)."""
    past = _PAST_NAME.match(name)
    if past:
        return f"{past.group(1)}.{new}.{past.group(3)}" if int(past.group(2)) == old else None
    match = _LAYER_NAME.search(name)
    if match and int(match.group(2)) == old:
        return f"{name[: match.start(2)]}{new}{name[match.end(2) :]}"
    return None


def _attribute_key(attr: Any) -> tuple[Any, ...]:
    value = attr.value
    if hasattr(value, "numpy"):  # a tensor attribute (Constant)
        array = value.numpy()
        return (attr.name, str(array.dtype), array.shape, array.tobytes())
    if isinstance(value, (list, tuple)):
        value = tuple(value)
    return (attr.name, attr.type, value)


def _signature(node: Any) -> tuple[Any, ...]:
    for attr in node.attributes.values():
        if attr.is_ref() or attr.type.name.startswith("GRAPH"):
            raise StampMismatch(f"node {node.name} has a subgraph or reference attribute")
    attrs = tuple(sorted(_attribute_key(a) for a in node.attributes.values()))
    return (node.domain, node.op_type, node.overload, node.version, len(node.inputs), len(node.outputs), attrs)


@dataclass(frozen=True)
class _Input:
    kind: str  # "shared" | "own" | "previous" | "source"
    value: Any = None  # shared: the value itself; source: layer 2's initializer or graph input
    position: int = 0  # own/previous: the producing node's position in its layer
    output: int = 0


def _rules(layer0: set[Any], a: list[Any], b: list[Any]) -> list[list[_Input]]:
    """How each input of layer b (= 2) derives from its layer, as read off the a (= 1) -> b step."""
    position_a = {node: i for i, node in enumerate(a)}
    position_b = {node: i for i, node in enumerate(b)}
    rules: list[list[_Input]] = []
    for p, (node_a, node_b) in enumerate(zip(a, b, strict=True)):
        if _signature(node_a) != _signature(node_b):
            raise StampMismatch(f"layers 1 and 2 differ at node {p}: {node_a.op_type} vs {node_b.op_type}")
        try:
            rules.append(_input_rules(p, list(node_a.inputs), node_b, layer0, position_a, position_b))
        except StampMismatch:
            if node_b.op_type not in _COMMUTATIVE or node_b.domain != "" or len(node_b.inputs) != 2:
                raise
            # The tracer orders symbolic sums as it likes (past_seq + seq, seq + past_seq).
            rules.append(_input_rules(p, list(node_a.inputs)[::-1], node_b, layer0, position_a, position_b))
    return rules


def _input_rules(
    p: int, inputs_a: list[Any], node_b: Any, layer0: set[Any], position_a: dict[Any, int], position_b: dict[Any, int]
) -> list[_Input]:
    """The rules for node *p* of layer 2, checked against the inputs of its layer-1 twin."""
    row: list[_Input] = []
    for va, vb in zip(inputs_a, node_b.inputs, strict=True):
        if va is vb:
            row.append(_Input("shared", vb))
            continue
        if va is None or vb is None:
            raise StampMismatch(f"layers 1 and 2 differ in optional inputs of node {p} ({node_b.op_type})")
        producer_a, producer_b = va.producer(), vb.producer()
        if producer_b in position_b:
            q = position_b[producer_b]
            if position_a.get(producer_a) != q or va.index() != vb.index() or q >= p:
                raise StampMismatch(f"layer 2 node {p} ({node_b.op_type}) reads its layer unlike layer 1")
            row.append(_Input("own", position=q, output=vb.index()))
        elif producer_b in position_a:
            if producer_a not in layer0:
                raise StampMismatch(f"layer 2 node {p} ({node_b.op_type}) reads layer 1, layer 1 not layer 0")
            row.append(_Input("previous", position=position_a[producer_b], output=vb.index()))
        elif producer_b is None and vb.name and _renamed(vb.name, 2, 1) == va.name:
            row.append(_Input("source", vb))
        else:
            raise StampMismatch(f"layer 2 node {p} ({node_b.op_type}) reads {vb.name}, not a per-layer value")
    return row


def _copy_node(template: Any, inputs: list[Any], layer: int) -> Any:
    import onnx_ir as ir

    attributes = [ir.Attr(a.name, a.type, a.value) for a in template.attributes.values()]
    node = ir.Node(
        template.domain,
        template.op_type,
        inputs,
        attributes,
        overload=template.overload,
        num_outputs=len(template.outputs),
        version=template.version,
        name=f"{template.name}.L{layer}" if template.name else None,
    )
    for made, model in zip(node.outputs, template.outputs, strict=True):
        if model.name:
            made.name = _renamed(model.name, 2, layer) or f"{model.name}.L{layer}"
        made.type = model.type
        made.shape = None if model.shape is None else ir.Shape(model.shape.dims)
    return node


def _source(graph: Any, template: Any, layer: int, made: dict[str, Any]) -> Any:
    """Layer *layer*'s initializer or past input corresponding to layer 2's *template*."""
    import onnx_ir as ir

    name = _renamed(template.name, 2, layer)
    assert name is not None  # _rules only admits per-layer names
    if name not in made:
        shape = None if template.shape is None else ir.Shape(template.shape.dims)
        value = ir.Value(name=name, type=template.type, shape=shape)
        if template.is_initializer():
            value.const_value = template.const_value  # a shape-only placeholder until the weights are filled in
            graph.register_initializer(value)
        elif template.is_graph_input():
            graph.inputs.append(value)
        else:
            raise StampMismatch(f"{template.name} is neither an initializer nor a graph input")
        made[name] = value
    return made[name]


def stamp_layers(model: Any, num_layers: int) -> int:
    """Grow a model traced with `TEMPLATE_LAYERS` layers to *num_layers*; returns the nodes added."""
    graph = model.graph
    _bypass_identities(graph)
    layers = _nodes_by_layer(graph)
    if sorted(layers) != list(range(TEMPLATE_LAYERS)):
        raise StampMismatch(f"nodes of layers {sorted(layers)} traced, expected 0..{TEMPLATE_LAYERS - 1}")
    a, b = layers[1], layers[2]
    if len(a) != len(b):
        raise StampMismatch(f"layer 1 has {len(a)} nodes, layer 2 has {len(b)}")
    rules = _rules(set(layers[0]), a, b)
    in_b = set(b)
    exits = [  # layer 2's values read after it: by later nodes (the final norm) or as graph outputs
        (p, o, [(user, i) for user, i in value.uses() if user not in in_b], value.is_graph_output())
        for p, node in enumerate(b)
        for o, value in enumerate(node.outputs)
    ]
    made_sources: dict[str, Any] = {}
    previous, added = b, []
    for layer in range(TEMPLATE_LAYERS, num_layers):
        copies: list[Any] = []
        for p, template in enumerate(b):
            inputs = []
            for rule in rules[p]:
                if rule.kind == "shared":
                    inputs.append(rule.value)
                elif rule.kind == "own":
                    inputs.append(copies[rule.position].outputs[rule.output])
                elif rule.kind == "previous":
                    inputs.append(previous[rule.position].outputs[rule.output])
                else:
                    inputs.append(_source(graph, rule.value, layer, made_sources))
            copies.append(_copy_node(template, inputs, layer))
        for p, o, _, is_output in exits:
            if is_output:
                value = copies[p].outputs[o]
                if _renamed(b[p].outputs[o].name, 2, layer) is None:
                    raise StampMismatch(f"graph output {b[p].outputs[o].name} is not a per-layer cache tensor")
                graph.outputs.append(value)
        added.extend(copies)
        previous = copies
    graph.insert_after(b[-1], added)
    for p, o, users, _ in exits:
        for user, i in users:
            user.replace_input_with(i, previous[p].outputs[o])
    _order_io(graph)
    graph.sort()
    return len(added)


def _bypass_identities(graph: Any) -> None:
    """Read through Identity nodes (the cache wrapper routes each past input through one, outside the layer)."""
    for node in list(graph):
        if node.op_type == "Identity" and node.domain == "" and not node.outputs[0].is_graph_output():
            node.outputs[0].replace_all_uses_with(node.inputs[0])
            graph.remove(node, safe=True)


def _order_io(graph: Any) -> None:
    """Graph inputs and outputs in the layout's order: cache tensors by layer, key before value."""

    def key(value: Any) -> tuple[int, int, str]:
        match = _PAST_NAME.match(value.name or "")
        if match is None:
            return (0, 0, "")  # input_ids, attention_mask, position_ids, logits keep their places
        return (1, int(match.group(2)), match.group(3))

    for values in (graph.inputs, graph.outputs):
        ordered = sorted(values, key=key)  # stable: the non-cache values keep their order
        values.clear()
        values.extend(ordered)
