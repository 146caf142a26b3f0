"""Quantization: RTN (the baseline) now; the AWQ algorithm builds on the same pieces."""

from awq2trt.quantize.api import quantize_checkpoint
from awq2trt.quantize.rtn import rtn_quantize

__all__ = ["quantize_checkpoint", "rtn_quantize"]
