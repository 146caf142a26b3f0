"""Schemas of ONNX Runtime ops that onnx itself does not know, for checking graphs that use them."""

from __future__ import annotations

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
