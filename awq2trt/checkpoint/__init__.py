"""Checkpoint formats: every on-disk layout to and from `QuantWeight`, plus the AutoAWQ GEMM writer."""

from awq2trt.checkpoint.awq_config import AwqConfig
from awq2trt.checkpoint.describe import describe_checkpoint
from awq2trt.checkpoint.reader import Checkpoint, open_checkpoint
from awq2trt.checkpoint.writer import write_awq_gemm_checkpoint

__all__ = ["AwqConfig", "Checkpoint", "describe_checkpoint", "open_checkpoint", "write_awq_gemm_checkpoint"]
