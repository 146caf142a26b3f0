"""The ``ort`` target: every ``awq2trt::Int4MatMul`` becomes ONNX Runtime's ``com.microsoft.MatMulNBits``.

MatMulNBits is ONNX Runtime's own int4 kernel (CPU and CUDA), so the lowered graph runs in stock
``onnxruntime``.  Its layout (checked on this machine with ORT 1.32):

* ``B`` uint8 [N, K/G, G/2], even k in the low nibble: exactly the IR's [N, K/2] codes, reshaped (same bytes);
* ``scales`` [N, K/G] in A's dtype: unchanged;
* ``zero_points`` uint8 [N, ceil((K/G)/2)]: two 4-bit codes per byte, group 2j in the low nibble, each row padded
  on its own (a contiguous packing is rejected; a wrong nibble order gives wrong numbers silently);
* ``g_idx`` is never emitted: with packed zero points ORT silently ignores the zero points when it is present;
* ``bias`` [N]: input 5.

``accuracy_level`` 4 computes with int8 activations (about 4x faster on CPU, ~0.5 % relative error);
0 keeps the activations' precision (exact up to float summation order).
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any, ClassVar

from awq2trt.errors import Awq2TrtError
from awq2trt.ir import int4_op
from awq2trt.ir.graph import MS_DOMAIN, remap_initializer, take_over
from awq2trt.ir.ort_schemas import register_ort_schemas
from awq2trt.sidecar import KvCacheSpec, Sidecar
from awq2trt.targets.base import ExportOptions, Target
from awq2trt.targets.genai_config import write_genai_config
from awq2trt.targets.lm_head import LM_HEAD_CHOICES, quantize_lm_head
from awq2trt.targets.matmul_nbits import pack_zero_points

ACCURACY_LEVELS = (0, 1, 2, 3, 4)


def _check_block_size(node_name: str, k: int, block_size: int) -> None:
    if block_size < 16 or block_size & (block_size - 1) or k % block_size:
        raise Awq2TrtError(
            node_name,
            expected=f"a group size that is a power of two >= 16 and divides K={k} (MatMulNBits)",
            got=block_size,
        )


def _module_name(codes_name: str) -> str:
    return codes_name.removeprefix("model.").removesuffix(".qweight")


def lower_to_ort(model: Any, *, accuracy_level: int = 4) -> int:
    """Rewrite every Int4MatMul into MatMulNBits in place; returns how many were rewritten."""
    import onnx_ir as ir

    if accuracy_level not in ACCURACY_LEVELS:
        raise Awq2TrtError("--accuracy-level", expected="0, 1, 2, 3 or 4", got=accuracy_level)
    graph = model.graph
    count = 0
    for node in list(graph):
        if not int4_op.is_int4_matmul(node):
            continue
        a, b, scales, zeros, bias = (list(node.inputs) + [None] * 5)[:5]
        k, n = node.attributes["K"].as_int(), node.attributes["N"].as_int()
        block = node.attributes["block_size"].as_int()
        _check_block_size(node.name or b.name, k, block)
        for value in (b, zeros):
            if value is not None and (not value.is_initializer() or len(value.uses()) != 1):
                raise Awq2TrtError(value.name, expected="a constant used by one matmul only", got="a shared value")
        groups = k // block
        remap_initializer(b, (n, groups, block // 2), lambda codes, s=(n, groups, block // 2): codes.reshape(s))
        if zeros is not None:
            remap_initializer(zeros, (n, (groups + 1) // 2), pack_zero_points)
        lowered = ir.node(
            "MatMulNBits",
            [a, b, scales, zeros, None, bias] if bias is not None else [a, b, scales, zeros],
            attributes={"K": k, "N": n, "bits": 4, "block_size": block, "accuracy_level": accuracy_level},
            domain=MS_DOMAIN,
            # Named after the Linear it computes, so profiles and per-layer tools can find it.
            name=_module_name(b.name) + "/MatMulNBits",
        )
        graph.insert_before(node, lowered)
        take_over(node.outputs[0], lowered.outputs[0], suffix="int4")
        graph.remove(node, safe=True)
        count += 1
    model.opset_imports[MS_DOMAIN] = 1
    int4_op.drop_functions(model)
    return count


class OrtTarget(Target):
    """ONNX Runtime: MatMulNBits, ORT's fused norms, rotary and GroupQueryAttention; a GenAI model folder."""

    name = "ort"
    description = "ONNX Runtime: MatMulNBits int4 kernels and ORT's contrib LLM ops (also an ORT GenAI folder)"
    passes: ClassVar[tuple[str, ...]] = (
        "fuse_qkv",
        "fuse_gate_up",
        "fuse_rmsnorm",
        "fuse_skip_rmsnorm",
        "fuse_rotary",
        "fuse_gqa",
        "cleanup",
    )
    options = frozenset({"accuracy_level", "lm_head"})

    def check_options(self, options: ExportOptions) -> None:
        super().check_options(options)
        if options.accuracy_level not in ACCURACY_LEVELS:
            raise Awq2TrtError("--accuracy-level", expected="0, 1, 2, 3 or 4", got=options.accuracy_level)
        if options.lm_head not in LM_HEAD_CHOICES:
            raise Awq2TrtError("--lm-head", expected=" or ".join(LM_HEAD_CHOICES), got=options.lm_head)

    def lower(self, model: Any, options: ExportOptions) -> int:
        count = lower_to_ort(model, accuracy_level=options.accuracy_level)
        quantize_lm_head(model, options.lm_head, accuracy_level=options.accuracy_level)
        return count

    def kv_cache(self, passes_run: Collection[str]) -> KvCacheSpec:
        # GroupQueryAttention appends in place: past and present may be one buffer of the full context.
        return KvCacheSpec(shared_buffer="fuse_gqa" in passes_run)

    def write_extra_files(self, folder: Path, sidecar: Sidecar) -> list[str]:
        return [write_genai_config(folder, sidecar)]  # the folder doubles as an ONNX Runtime GenAI model

    def verify(self, model_path: Path) -> None:
        register_ort_schemas()  # fused norms use ORT ops the onnx checker does not know otherwise
        super().verify(model_path)
