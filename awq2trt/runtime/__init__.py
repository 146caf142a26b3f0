"""ONNX Runtime inference over the exported graph; needs only onnxruntime, numpy and ``tokenizers``."""

from awq2trt.runtime.generate import Generation, Timing
from awq2trt.runtime.sampling import SamplingConfig
from awq2trt.runtime.session import OrtModel
from awq2trt.runtime.streaming import IncrementalDecoder

__all__ = ["Generation", "IncrementalDecoder", "OrtModel", "SamplingConfig", "Timing"]
