"""AWQ: activation-aware per-channel scales and clipping, searched block by block on calibration text."""

from awq2trt.quantize.awq.api import AwqResult, awq_quantize_checkpoint, format_report
from awq2trt.quantize.awq.block_quant import AwqSettings, BlockReport
from awq2trt.quantize.awq.mappings import BUILTIN_MAPPINGS, ArchitectureMapping, ScalingGroup, load_mapping_file

__all__ = [
    "BUILTIN_MAPPINGS",
    "ArchitectureMapping",
    "AwqResult",
    "AwqSettings",
    "BlockReport",
    "ScalingGroup",
    "awq_quantize_checkpoint",
    "format_report",
    "load_mapping_file",
]
