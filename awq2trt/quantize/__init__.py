"""Quantization: RTN (the baseline) and AWQ (activation-aware scales and clipping, `awq2trt.quantize.awq`)."""

from awq2trt.quantize.api import quantize_checkpoint
from awq2trt.quantize.rtn import rtn_quantize

__all__ = ["quantize_checkpoint", "rtn_quantize"]
