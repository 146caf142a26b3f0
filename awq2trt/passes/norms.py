"""RMSNorm fusions for the ONNX Runtime target, reused from onnxscript (``onnxscript.rewriter.ort_fusions``).

onnxscript's rules match our traced form as it is (Pow, ReduceMean, Add eps, Sqrt, Reciprocal, Mul, Mul
weight), checked with onnxscript 0.7.2 / onnx-ir 1.1.0: every norm of a Llama or Qwen2 graph fuses.

* ``fuse_rmsnorm``: the seven ops -> ``SimplifiedLayerNormalization`` (an ONNX Runtime contrib op that
  ONNX Runtime registers in the default domain);
* ``fuse_skip_rmsnorm``: residual ``Add`` + that norm -> ``com.microsoft.SkipSimplifiedLayerNormalization``
  (also yields the sum, which the next residual reads).  It matches the output of ``fuse_rmsnorm`` and so
  does nothing when that pass is disabled.

Neither reads weight data (only the epsilon constant), so lazy initializers stay lazy.  TensorRT keeps the
standard-op form (no pass for ``trt``).
"""

from __future__ import annotations

from typing import Any

from awq2trt.ir.graph import MS_DOMAIN
from awq2trt.ir.ort_schemas import register_ort_schemas
from awq2trt.passes.manager import PassContext


def fuse_rmsnorm(model: Any, context: PassContext) -> int:
    from onnxscript.rewriter.ort_fusions.rms_normalization import fuse_rms_normalization

    register_ort_schemas()
    return int(fuse_rms_normalization(model))


def fuse_skip_rmsnorm(model: Any, context: PassContext) -> int:
    from onnxscript.rewriter.ort_fusions.skip_normalization import fuse_skip_rms_normalization

    count = int(fuse_skip_rms_normalization(model))
    if count:
        model.opset_imports.setdefault(MS_DOMAIN, 1)
    return count
