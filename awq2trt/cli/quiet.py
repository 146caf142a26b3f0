"""Keeping third-party logs and warnings off the terminal unless ``--verbose`` asks for them.

Split in two because serving commands must not import torch: the environment part runs for every
command; the torch part only in commands that load the compiler anyway.
"""

from __future__ import annotations

import logging
import os
import warnings

_COMPILER_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir")


def quiet_environment(verbose: bool) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a model hub
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if verbose:  # awq2trt's own progress notes (which passes rewrote what, why every layer was traced)
        logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
        logging.getLogger("awq2trt").setLevel(logging.INFO)
        return
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def quiet_compiler_logs(verbose: bool) -> None:
    """Called by commands that trace, quantize or load the PyTorch reference, before they start."""
    if verbose:
        return
    import torch  # noqa: F401  (torch configures its loggers on import; quiet them after that)

    for name in _COMPILER_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
