"""The passes awq2trt ships, in the order they run (each target says which of them it runs)."""

from __future__ import annotations

from awq2trt.passes.attention import fuse_gqa
from awq2trt.passes.cleanup import cleanup
from awq2trt.passes.fuse_int4 import fuse_gate_up, fuse_qkv
from awq2trt.passes.manager import Pass, PassManager
from awq2trt.passes.norms import fuse_rmsnorm, fuse_skip_rmsnorm
from awq2trt.passes.own_attention import own_gqa
from awq2trt.passes.rotary import fuse_rotary
from awq2trt.passes.silu_mul import fuse_silu_mul

DEFAULT_PASSES = PassManager(
    [
        Pass("fuse_qkv", "q/k/v Int4MatMuls on one input -> one Int4MatMul + Split (awq2trt)", fuse_qkv),
        Pass("fuse_gate_up", "gate/up Int4MatMuls on one input -> one Int4MatMul + Split (awq2trt)", fuse_gate_up),
        Pass(
            "fuse_silu_mul",
            "fused gate/up Int4MatMul + Split + SiLU * up -> one Int4MatMul with the silu_mul epilogue (awq2trt)",
            fuse_silu_mul,
        ),
        Pass("fuse_rmsnorm", "RMSNorm -> SimplifiedLayerNormalization (onnxscript)", fuse_rmsnorm),
        Pass(
            "fuse_skip_rmsnorm",
            "residual Add + SimplifiedLayerNormalization -> SkipSimplifiedLayerNormalization (onnxscript)",
            fuse_skip_rmsnorm,
        ),
        Pass(
            "fuse_rotary",
            "rotary embedding -> com.microsoft.RotaryEmbedding with cos/sin caches (onnxscript + awq2trt)",
            fuse_rotary,
        ),
        Pass(
            "fuse_gqa",
            "attention + KV-cache Concat -> com.microsoft.GroupQueryAttention (awq2trt)",
            fuse_gqa,
        ),
        Pass(
            "own_gqa",
            "fp32 GroupQueryAttention -> awq2trt::GroupQueryAttention, whose decode step our kernel library computes"
            " (awq2trt)",
            own_gqa,
        ),
        Pass("cleanup", "remove dead nodes and initializers, sort topologically", cleanup),
    ]
)
