"""``awq2trt triton``: Triton Inference Server model repositories from an exported folder or a TensorRT engine.

``config``: ``config.pbtxt`` built as Triton's own ``ModelConfig`` protobuf message (never pasted text);
``repository``: the repository written all-or-nothing; ``serving``: the request handling the Python-backend
model runs (onnxruntime, numpy and tokenizers only); ``python_model/model.py``: that model's Triton entry point.
"""

# Shared by the command line (which must not import protobuf for --help) and the repository writer.
KINDS = ("generate", "onnxruntime", "tensorrt")
DEVICES = ("cpu", "gpu")
