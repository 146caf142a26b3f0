"""The compiler frontend: trace the reference model into the ONNX "IR" graph with ``awq2trt::Int4MatMul`` nodes."""
