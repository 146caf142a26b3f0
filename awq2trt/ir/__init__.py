"""What the frontend, the passes, the targets and the runtime share about the exported graph.

``io_names``: the graph's input and output names (no dependencies: the runtime imports it).
``int4_op``: the ``awq2trt::Int4MatMul`` op (schema, attributes, function bodies).
``graph``: onnx_ir helpers every pass and lowering needs (producers, constants, taking over an output's name).

Importing this package imports nothing heavy; each submodule imports onnx/onnx_ir only where it needs them.
"""
