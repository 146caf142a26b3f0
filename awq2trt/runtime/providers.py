"""Execution providers by the short names the CLI takes (``cpu``, ``cuda``), checked against this install."""

from __future__ import annotations

import onnxruntime as ort

from awq2trt.errors import Awq2TrtError

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    # CPU stays listed so the few ops a GPU provider lacks (shape arithmetic) still have a home.
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
}


def execution_providers(name: str) -> list[str]:
    """The ONNX Runtime provider list for *name*; one clear error when this onnxruntime build lacks it."""
    if name not in PROVIDERS:
        raise Awq2TrtError("--provider", expected=" or ".join(PROVIDERS), got=name)
    wanted = PROVIDERS[name][0]
    available = ort.get_available_providers()
    if wanted not in available:
        raise Awq2TrtError(
            "--provider",
            expected=f"{wanted} in this onnxruntime build",
            got=", ".join(available),
            detail="install onnxruntime-gpu (the `gpu` extra) on a machine with CUDA" if name == "cuda" else None,
        )
    return PROVIDERS[name]
