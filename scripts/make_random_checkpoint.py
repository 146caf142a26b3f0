"""Write a checkpoint of a real model's *shape* with random int4 codes (AutoAWQ GEMM), streamed per layer.

    bash scripts/venv-run python scripts/make_random_checkpoint.py -o /tmp/llama2-7b-random --shape llama-2-7b

Used to measure export time and memory at a realistic size without a multi-gigabyte download.  Codes, zero
points and scales are random but well-formed (scales ~ 1e-3, so activations stay finite); embeddings and
norms are random fp16.  Only one layer's tensors (plus one shard) are in memory at a time.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from awq2trt.checkpoint import AwqConfig, write_awq_gemm_checkpoint
from awq2trt.quant_weight import QuantWeight

SHAPES = {
    "llama-2-7b": dict(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096, rope_theta=10000.0,
    ),
    "tiny": dict(
        hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=512, max_position_embeddings=512, rope_theta=10000.0,
    ),
}  # fmt: skip


def random_weight(rng: np.random.Generator, n: int, k: int, g: int) -> QuantWeight:
    return QuantWeight(
        rng.integers(0, 16, (n, k), dtype=np.uint8),
        (rng.random((n, k // g), dtype=np.float32) * 1e-3 + 5e-4).astype(np.float16),
        rng.integers(6, 10, (n, k // g), dtype=np.uint8),
        g,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="llama-2-7b")
    parser.add_argument("--group-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    shape = SHAPES[args.shape]
    h, i, v = shape["hidden_size"], shape["intermediate_size"], shape["vocab_size"]
    kv = h // shape["num_attention_heads"] * shape["num_key_value_heads"]
    rng = np.random.default_rng(args.seed)
    g = args.group_size
    layers = shape["num_hidden_layers"]

    def dense() -> Iterator[tuple[str, np.ndarray]]:
        yield "model.embed_tokens.weight", (rng.standard_normal((v, h), dtype=np.float32) * 0.02).astype(np.float16)
        yield "lm_head.weight", (rng.standard_normal((v, h), dtype=np.float32) * 0.02).astype(np.float16)
        yield "model.norm.weight", np.ones(h, np.float16)
        for layer in range(layers):
            yield f"model.layers.{layer}.input_layernorm.weight", np.ones(h, np.float16)
            yield f"model.layers.{layer}.post_attention_layernorm.weight", np.ones(h, np.float16)

    def quantized() -> Iterator[tuple[str, QuantWeight, None]]:
        shapes = {
            "self_attn.q_proj": (h, h), "self_attn.k_proj": (kv, h), "self_attn.v_proj": (kv, h),
            "self_attn.o_proj": (h, h), "mlp.gate_proj": (i, h), "mlp.up_proj": (i, h), "mlp.down_proj": (h, i),
        }  # fmt: skip
        for layer in tqdm(range(layers), desc="layers"):
            for name, (n, k) in shapes.items():
                yield f"model.layers.{layer}.{name}", random_weight(rng, n, k, g), None

    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu", "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float16", **shape,
    }  # fmt: skip
    out = write_awq_gemm_checkpoint(
        args.output,
        config=config,
        awq_config=AwqConfig(group_size=g),
        quantized=quantized(),
        dense=dense(),
        max_shard_bytes=1 << 30,
        force=args.force,
    )
    print(out)


if __name__ == "__main__":
    main()
