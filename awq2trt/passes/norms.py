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

from awq2trt.passes.manager import PassContext

MS_DOMAIN = "com.microsoft"
_FLOATS = ["tensor(float)", "tensor(float16)", "tensor(bfloat16)", "tensor(double)"]


def register_ort_schemas() -> None:
    """Tell onnx about ``SimplifiedLayerNormalization``, which ONNX Runtime defines in the default domain.

    ONNX Runtime accepts it only there (``com.microsoft`` is refused), and onnx's checker and strict shape
    inference reject an unknown default-domain op, so a process that checks an ort graph with fused norms
    registers this schema first (ONNX Runtime's own: since version 1, X, scale -> Y, optional inv_std_var).
    Idempotent.
    """
    import onnx
    from onnx import helper

    if onnx.defs.has("SimplifiedLayerNormalization"):
        return
    schema = onnx.defs.OpSchema
    formal = schema.FormalParameter
    optional = schema.FormalParameterOption.Optional
    onnx.defs.register_schema(
        schema(
            "SimplifiedLayerNormalization",
            "",
            1,
            doc="ONNX Runtime contrib op: RMS normalization (no mean subtraction, no bias).",
            inputs=[formal("X", "T"), formal("scale", "V")],
            outputs=[formal("Y", "V"), formal("inv_std_var", "U", param_option=optional)],
            type_constraints=[("T", _FLOATS, "input"), ("U", _FLOATS[::3], "stash"), ("V", _FLOATS, "scale, output")],
            attributes=[
                schema.Attribute("axis", helper.make_attribute("axis", -1), "first normalized axis"),
                schema.Attribute("epsilon", helper.make_attribute("epsilon", 1e-5), "added to the mean square"),
                schema.Attribute("stash_type", helper.make_attribute("stash_type", 1), "computation dtype"),
            ],
        )
    )


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
