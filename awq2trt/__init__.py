"""awq2trt: compile AWQ int4 language models into ONNX, ONNX Runtime, TensorRT and Triton artifacts."""

from awq2trt.checkpoint.awq_config import AwqConfig
from awq2trt.checkpoint.reader import Checkpoint, open_checkpoint
from awq2trt.errors import Awq2TrtError
from awq2trt.quant_weight import QuantWeight

__version__ = "0.1.0"

__all__ = ["Awq2TrtError", "AwqConfig", "Checkpoint", "QuantWeight", "__version__", "open_checkpoint"]
