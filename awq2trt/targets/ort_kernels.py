"""The ``ort-kernels`` target: the ``ort`` graph, but every int4 matmul runs in our own kernel library.

Everything but the int4 lowering is the ``ort`` target's (the same passes, fused norms, rotary and
GroupQueryAttention, plus ``fuse_silu_mul``, whose SwiGLU epilogue our kernel computes, and ``own_gqa``, which
moves each GroupQueryAttention into our domain so the library computes its decode steps; the same ``--lm-head``
choices: an int4 head becomes one more Int4MatMul, an int8 head a MatMulNBits, which our library does not
implement).  Each ``awq2trt::Int4MatMul`` node stays as it is, with its function body attached so the graph is
still valid ONNX that stock ONNX Runtime could run, and gains an ``accuracy_level`` attribute that the library's
kernel reads.  ONNX Runtime prefers a registered kernel to a node's model-local function body, so a session that
registered ``libawq2trt_ort`` (plugins/onnxruntime) runs our kernel for every node; the sidecar's ``kernels``
field tells runtimes to register it (``awq2trt.runtime.kernels``).

``--weight-layout tiles16`` stores each Int4MatMul's codes, scales and zero points in the 16-row tiles the
library's int8 decode kernel reads (`awq2trt.cpu_layout`), so that sessions never repack: the node says
``weight_layout = "tiles16"`` and names the tiles16 overload, whose function body untiles with standard ops, so
the graph stays valid ONNX that stock ONNX Runtime runs to the same numbers.  The sidecar records the layout
with the other target options.

No ``genai_config.json``: ONNX Runtime GenAI would not load our library, and it would silently run the slow
function bodies instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from awq2trt.errors import Awq2TrtError
from awq2trt.ir import attention_op, int4_op
from awq2trt.ir.graph import remap_initializer
from awq2trt.sidecar import ORT_KERNELS, KernelsSpec, Sidecar
from awq2trt.targets.base import DEFAULT_WEIGHT_LAYOUT, ExportOptions
from awq2trt.targets.lm_head import quantize_lm_head
from awq2trt.targets.ort import OrtTarget

# The levels the library's kernel implements (it refuses any other): 0 = fp32 activations, exact;
# 4 = int8 activations per block, as MatMulNBits' level 4.
KERNEL_ACCURACY_LEVELS = (0, 4)


def mark_accuracy_level(model: Any, accuracy_level: int) -> int:
    """Set ``accuracy_level`` on every Int4MatMul of the onnx_ir *model*; returns how many nodes there are."""
    import onnx_ir as ir

    nodes = int4_op.int4_nodes(model.graph)
    for node in nodes:
        node.attributes[int4_op.ACCURACY_LEVEL] = ir.AttrInt64(int4_op.ACCURACY_LEVEL, accuracy_level)
    return len(nodes)


def _owned_constant(value: Any) -> bool:
    """Whether *value* is an initializer with data that only one node reads (so it may be rewritten in place)."""
    return value.is_initializer() and value.const_value is not None and len(value.uses()) == 1


def tile_weights(model: Any) -> int:
    """Rewrite the Int4MatMul nodes of the onnx_ir *model* into the tiles16 weight layout, in place; returns how
    many nodes now use it.

    Every rows-layout node whose codes, scales and zero points are initializers read by that node alone is
    rewritten: those initializers keep their names and get the tiles (computed lazily, tensor by tensor, from
    their current data when the model is saved: the layout maps each tensor on its own), the node gains
    ``weight_layout = "tiles16"`` and names the tiles16 overload.  A node whose weights are computed or shared
    keeps the rows layout (still correct: the library reads the attribute per node).  A shape the layout cannot
    hold is an error naming the node.
    """
    import onnx_ir as ir

    from awq2trt.cpu_layout import CHUNK_BYTES, CHUNK_K, TILE_N, check_shape, tile_codes, tile_groups, tiles

    count = 0
    for node in int4_op.int4_nodes(model.graph):
        if int4_op.node_layout(node) == int4_op.LAYOUT_TILES16:
            count += 1
            continue
        _, b, scales, zeros, _ = [*node.inputs, None, None, None, None, None][:5]
        if not all(_owned_constant(v) for v in (b, scales, zeros) if v is not None):
            continue
        k, n = node.attributes["K"].as_int(), node.attributes["N"].as_int()
        g = node.attributes["block_size"].as_int()
        check_shape(n, k, g, node.name or b.name)
        t, groups = tiles(n), k // g
        remap_initializer(b, (t, k // CHUNK_K, TILE_N, CHUNK_BYTES), lambda codes, w=b.name: tile_codes(codes, w))
        remap_initializer(scales, (t, groups, TILE_N), lambda values, w=scales.name: tile_groups(values, w))
        if zeros is not None:
            remap_initializer(zeros, (t, groups, TILE_N), lambda values, w=zeros.name: tile_groups(values, w))
        node.attributes[int4_op.WEIGHT_LAYOUT] = ir.AttrString(int4_op.WEIGHT_LAYOUT, int4_op.LAYOUT_TILES16)
        node.overload = int4_op.node_overload(node)  # the tiles16 body, with the node's epilogue if it has one
        count += 1
    return count


def weight_layout(options: ExportOptions) -> str:
    """The layout an export writes: the one asked for, else tiles16 at level 4 (DEFAULT_WEIGHT_LAYOUT) and rows at
    level 0, where the exact paths, which read rows, would untile every call."""
    if options.weight_layout is not None:
        return options.weight_layout
    return DEFAULT_WEIGHT_LAYOUT if options.accuracy_level == 4 else int4_op.LAYOUT_ROWS


class OrtKernelsTarget(OrtTarget):
    """ONNX Runtime with awq2trt's own int4 kernels (libawq2trt_ort) and ORT's contrib LLM ops."""

    name = "ort-kernels"
    description = (
        "ONNX Runtime with awq2trt's int4 kernels (libawq2trt_ort custom ops) and ORT's contrib LLM ops;"
        " needs the library at run time"
    )
    options = OrtTarget.options | {"weight_layout"}
    # The ort target's passes plus the SwiGLU epilogue our kernel applies (awq2trt.passes.silu_mul) and our decode
    # attention (awq2trt.passes.own_attention), which takes fuse_gqa's nodes.
    passes: ClassVar[tuple[str, ...]] = (
        *OrtTarget.passes[:2],
        "fuse_silu_mul",
        *OrtTarget.passes[2:-1],
        "own_gqa",
        OrtTarget.passes[-1],
    )

    def check_options(self, options: ExportOptions) -> None:
        super().check_options(options)  # the ort target's checks (--lm-head choices, levels 0..4), then ours
        if options.accuracy_level not in KERNEL_ACCURACY_LEVELS:
            raise Awq2TrtError(
                "--accuracy-level",
                expected="0 (exact) or 4 (int8 activations) with --target ort-kernels",
                got=options.accuracy_level,
            )
        if weight_layout(options) not in int4_op.WEIGHT_LAYOUTS:
            raise Awq2TrtError(
                "--weight-layout", expected=" or ".join(int4_op.WEIGHT_LAYOUTS), got=options.weight_layout
            )

    def target_options(self, options: ExportOptions) -> dict[str, Any]:
        return {**super().target_options(options), "weight_layout": weight_layout(options)}

    def lower(self, model: Any, options: ExportOptions) -> int:
        count = len(int4_op.int4_nodes(model.graph))  # the checkpoint's int4 linears
        # An int4 head becomes one more Int4MatMul, so our kernel (and its layout) runs it too.
        quantize_lm_head(model, options.lm_head, accuracy_level=options.accuracy_level, int4_matmul=True)
        mark_accuracy_level(model, options.accuracy_level)
        if weight_layout(options) == int4_op.LAYOUT_TILES16:
            tile_weights(model)  # before the bodies: each node's overload names its layout
        int4_op.attach_functions(model)  # the bodies keep the graph valid ONNX (and a reference)
        attention_op.attach_functions(model)  # own_gqa's nodes: their body is ONNX Runtime's op
        return count

    def kernels(self) -> KernelsSpec:
        return ORT_KERNELS

    def write_extra_files(self, folder: Path, sidecar: Sidecar) -> list[str]:
        return []
