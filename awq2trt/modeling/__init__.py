"""The PyTorch reference model: transformers' architecture with `AwqLinear` modules (dequantize, then matmul)."""

from awq2trt.modeling.awq_linear import AwqLinear
from awq2trt.modeling.loader import SUPPORTED_MODEL_TYPES, load_reference_model

__all__ = ["SUPPORTED_MODEL_TYPES", "AwqLinear", "load_reference_model"]
