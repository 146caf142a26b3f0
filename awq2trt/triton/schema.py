"""Triton's model-configuration schema, as the protobuf module ``tritonclient`` ships (``model_config.proto``).

Imported on first use so ``awq2trt --help`` and the other commands never need tritonclient; without it the
``triton`` command exits with the missing-package code and says what to install.
"""

from __future__ import annotations

from types import ModuleType

from awq2trt.errors import MissingPackageError

INSTALL_HINT = 'pip install "awq2trt[triton]" (or tritonclient[grpc] >= 2.50)'


def model_config_pb2() -> ModuleType:
    """The ``model_config_pb2`` module: every config we write is a message of its ``ModelConfig``."""
    try:
        from tritonclient.grpc import model_config_pb2 as module
    except (ImportError, RuntimeError) as error:  # tritonclient.grpc raises RuntimeError without grpcio
        raise MissingPackageError("tritonclient", detail=f"not usable ({error}); {INSTALL_HINT}") from None
    return module
