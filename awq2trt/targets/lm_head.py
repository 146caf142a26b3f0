"""``--lm-head int8|int4``: quantize the dense output head of an ``ort`` graph into one ``MatMulNBits``.

On a small model the output head is the largest single read per generated token (SmolLM2-135M: a
49152 x 576 matrix, 113 MB in fp32 against 54 MB for all its int4 decoder layers), so decode speed
depends on it more than on anything else.  The head is quantized here per group of 32 input channels,
round to nearest: int8 with integer zero points (AutoAWQ's rule, `rtn_groups`), int4 symmetric over the whole
code range (`signed_max_groups`), the rule ONNX Runtime's quantizer, and so ONNX Runtime GenAI's int4 head,
uses: an int4-head speed comparison with GenAI is then one of equal heads.  On SmolLM2 the two int4 rules are
within noise of each other: perplexity on the first 2048 tokens of the Apache-2.0 text (fp32 body) is 26.30
symmetric against 26.87 with zero points (fp head 24.87), on GPL-3 (`awq2trt eval`, level 4) 31.78 against
31.70.  The embedding that a tied head shares stays exact, because the Gather that reads it touches only one
row per token.

The rewrite looks for the MatMul that produces ``logits`` and reads a constant weight, either the
[hidden, vocab] matrix itself or a ``Transpose`` of the [vocab, hidden] head (the traced form of
``nn.Linear`` and of tied embeddings).  The codes are computed lazily, when the graph is saved.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from awq2trt.errors import Awq2TrtError
from awq2trt.ir.graph import MS_DOMAIN, lazy_initializer, logits_matmul, take_over
from awq2trt.rounding import MIN_SCALE, round_to_nearest
from awq2trt.targets.matmul_nbits import pack_zero_points

LM_HEAD_CHOICES = ("fp", "int8", "int4")
BITS = {"int8": 8, "int4": 4}
DEFAULT_BLOCK_SIZE = 32


def rtn_groups(weight: np.ndarray, bits: int, block_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Round-to-nearest [N, K] -> codes uint8 [N, K], scales [N, K/G] (fp16-exact), zero points uint8 [N, K/G].

    The rule of the int4 RTN quantizer (`awq2trt.rounding.round_to_nearest`, numpy here) at *bits*, with
    zero points; scales are rounded to fp16 first, so an fp16 graph stores exactly the scale the codes were
    chosen for.
    """
    n, k = weight.shape
    groups = weight.astype(np.float32).reshape(n, k // block_size, block_size)
    codes, scales, zeros = round_to_nearest(groups, bits=bits, zero_point=True)
    return codes.reshape(n, k).astype(np.uint8), scales[..., 0], zeros[..., 0].astype(np.uint8)


def signed_max_groups(weight: np.ndarray, bits: int, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric round-to-nearest over the whole code range: [N, K] -> codes uint8 [N, K], scales [N, K/G].

    In each group the value of largest magnitude, v, goes to the lowest code: scale = v / -2^(bits-1) (so a
    negative scale for a positive v), rounded to fp16 first, codes = clip(round(w / scale) + 2^(bits-1), 0,
    2^bits - 1), and w' = (codes - 2^(bits-1)) * scale with the implicit zero point that MatMulNBits and
    Int4MatMul assume when no zero points are given.  The scale's magnitude is floored at MIN_SCALE / 2^(bits-1)
    (an all-zero group then has codes at the zero point).
    """
    n, k = weight.shape
    middle = 1 << (bits - 1)
    groups = weight.astype(np.float32).reshape(n, k // block_size, block_size)
    peak = np.take_along_axis(groups, np.abs(groups).argmax(axis=-1)[..., None], axis=-1)[..., 0]
    magnitude = np.maximum(np.abs(peak), MIN_SCALE) / middle
    scales = np.where(peak > 0, -magnitude, magnitude).astype(np.float16).astype(np.float32)
    codes = np.clip(np.round(groups / scales[..., None]) + middle, 0, (1 << bits) - 1)
    return codes.reshape(n, k).astype(np.uint8), scales


def pack_codes(codes: np.ndarray, bits: int, block_size: int) -> np.ndarray:
    """uint8 codes [N, K] -> MatMulNBits B [N, K/G, G*bits/8]; for 4 bits even k goes in the low nibble."""
    n, k = codes.shape
    if bits == 4:
        codes = codes[:, 0::2] | (codes[:, 1::2] << 4)
    return np.ascontiguousarray(codes.reshape(n, k // block_size, block_size * bits // 8), dtype=np.uint8)


def pack_zeros(zeros: np.ndarray, bits: int) -> np.ndarray:
    """Zero points as MatMulNBits wants them: one byte each for 8 bits, two per byte (rows padded) for 4."""
    return pack_zero_points(zeros) if bits == 4 else np.ascontiguousarray(zeros, dtype=np.uint8)


def _find_head(graph: Any) -> tuple[Any, Any, Any]:
    """(MatMul node, weight initializer, Transpose node or None) of the matmul that produces the logits."""
    node = logits_matmul(graph)
    if node is None:
        raise Awq2TrtError("--lm-head", expected="a graph whose logits come from a MatMul", got="another form")
    weight = node.inputs[1]
    if weight.is_initializer():
        return node, weight, None
    transpose = weight.producer()
    perm = transpose.attributes.get("perm") if transpose is not None else None
    if (
        transpose is not None
        and transpose.op_type == "Transpose"
        and transpose.inputs[0].is_initializer()
        and perm is not None
        and list(perm.as_ints()) == [1, 0]
    ):
        return node, transpose.inputs[0], transpose
    raise Awq2TrtError("--lm-head", expected="a constant output-head weight", got="a computed one")


def quantize_lm_head(
    model: Any,
    choice: str,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
    accuracy_level: int = 4,
    int4_matmul: bool = False,
) -> bool:
    """Replace the logits MatMul by MatMulNBits with a quantized head; False when *choice* is ``fp``.

    *int4_matmul*: an int4 head becomes an ``awq2trt::Int4MatMul`` (rows layout, the same codes) instead, for the
    ort-kernels target, whose library then runs the head too; an int8 head stays MatMulNBits.
    """
    import onnx_ir as ir

    from awq2trt.ir import int4_op

    if choice not in LM_HEAD_CHOICES:
        raise Awq2TrtError("--lm-head", expected=" or ".join(LM_HEAD_CHOICES), got=choice)
    if choice == "fp":
        return False
    bits = BITS[choice]
    graph = model.graph
    matmul, weight, transpose = _find_head(graph)
    source = weight.const_value
    # Stored [vocab, hidden] behind a Transpose; [hidden, vocab] when the MatMul reads it directly.
    n, k = (int(d) for d in (source.shape if transpose is not None else reversed(list(source.shape))))
    if k % block_size:
        raise Awq2TrtError("--lm-head", expected=f"hidden size {k} divisible by the block size", got=block_size)
    float_dtype = source.dtype

    symmetric = bits == 4  # no zero points: see the module docstring

    @functools.cache
    def rtn() -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:  # codes [vocab, hidden], scales, zero points
        w = source.numpy()
        w = w if transpose is not None else w.T
        if symmetric:
            return (*signed_max_groups(w, bits, block_size), None)
        return rtn_groups(w, bits, block_size)

    @functools.cache
    def quantized() -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        codes, scales, zeros = rtn()
        packed_zeros = None if zeros is None else pack_zeros(zeros, bits)
        return pack_codes(codes, bits, block_size), scales.astype(float_dtype.numpy()), packed_zeros

    def lazy(name: str, index: int, dtype: Any, shape: tuple[int, ...]) -> Any:
        return lazy_initializer(graph, name, dtype, shape, lambda: quantized()[index])

    groups = k // block_size
    attributes = {"K": k, "N": n, "bits": bits, "block_size": block_size, "accuracy_level": accuracy_level}
    scales = lazy("lm_head.scales", 1, float_dtype, (n, groups))
    if int4_matmul and bits == 4:
        # Int4MatMul's B is MatMulNBits' bytes without the block axis; symmetric, so no zero points.
        b = lazy_initializer(graph, "lm_head.qweight", ir.DataType.UINT8, (n, k // 2),
                             lambda: quantized()[0].reshape(n, k // 2))  # fmt: skip
        lowered = ir.node(
            int4_op.OP_TYPE,
            [matmul.inputs[0], b, scales],
            attributes=attributes,
            domain=int4_op.DOMAIN,
            name="lm_head/Int4MatMul",
            overload=int4_op.overload_name(False, False),
        )
    else:
        b = lazy("lm_head.qweight", 0, ir.DataType.UINT8, (n, groups, block_size * bits // 8))
        inputs = [matmul.inputs[0], b, scales]
        if not symmetric:
            inputs.append(lazy("lm_head.qzeros", 2, ir.DataType.UINT8, (n, groups)))  # int8: one per byte
        lowered = ir.node("MatMulNBits", inputs, attributes=attributes, domain=MS_DOMAIN,
                          name="lm_head/MatMulNBits")  # fmt: skip
    graph.insert_before(matmul, lowered)
    logits = matmul.outputs[0]
    out = lowered.outputs[0]
    out.shape, out.type = logits.shape, logits.type
    take_over(logits, out, suffix="dense", graph_outputs=True)
    graph.remove(matmul, safe=True)
    if transpose is not None and not transpose.outputs[0].uses():
        graph.remove(transpose, safe=True)
    if not weight.uses() and weight.name in graph.initializers:  # an untied head is no longer read at all
        graph.initializers.pop(weight.name)
    if lowered.domain == MS_DOMAIN:
        model.opset_imports[MS_DOMAIN] = 1
    return True
