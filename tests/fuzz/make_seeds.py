"""Write the seed inputs of every harness into ``corpus/<name>/seed-*`` from the fixtures (rerun after a format change).

Seeds are small valid (or nearly valid) inputs: one sliced Linear per format rather than a whole fixture, so
each file stays a few KB.  Minimized inputs the fuzzer found live beside them as ``crash-*`` / ``found-*``.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from awq2trt.checkpoint import open_checkpoint
from awq2trt.checkpoint.formats import awq_gemm, awq_gemv, compressed_tensors, llm_awq
from awq2trt.quant_weight import QuantWeight
from tests.fuzz import fuzz_index, fuzz_weights
from tests.fuzz._harness import CORPUS_DIR, FIXTURES

MODULE = "model.layers.0.self_attn.q_proj"
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'"
    " + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
LLAMA3 = (
    "{{ bos_token }}{% for message in messages %}{% if loop.index0 == 0 and message.role == 'system' %}"
    "{% set ns = namespace(sys=message.content) %}{% endif %}<|start_header_id|>{{ message['role'] }}"
    "<|end_header_id|>\n\n{{ message['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
MISTRAL = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}"
)
HOSTILE_TEMPLATES = (
    "{{ messages.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{{ 'a' * 1000000000 }}",
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "{{ '%1000000000s' % 'a' }}",
    "{% set ns = namespace(x='ab') %}{% for i in range(64) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}",
)


def write(name: str, seed: str, data: bytes) -> None:
    folder = CORPUS_DIR / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"seed-{seed}").write_bytes(data)


def small_weight() -> QuantWeight:
    """The fixture's first q_proj cut to 16 outputs x 64 inputs (two groups of 32)."""
    qw = open_checkpoint(FIXTURES / "llama-gemm-g64").quant_weight(MODULE)
    groups = 64 // fuzz_weights.GROUP
    zeros = np.repeat(qw.zeros[:16, :1], groups, axis=1)
    scales = np.repeat(qw.scales[:16, :1], groups, axis=1)
    return QuantWeight(qw.qweight[:16, :64].copy(), scales, zeros, fuzz_weights.GROUP).validated(MODULE)


def weights_seeds() -> None:
    qw = small_weight()
    norm = np.ones(64, np.float16)
    encoded = {
        "gemm": (0, awq_gemm.encode_gemm(qw)),
        "gemv": (1, awq_gemv.encode_gemv(qw)),
        "ct": (2, compressed_tensors.encode_compressed(qw)),
        "llm-awq-v0": (3, llm_awq.encode_llm_awq_v0(qw)),
        "llm-awq-v1": (3, llm_awq.encode_llm_awq_v1(qw)),
        "llm-awq-v2": (3, llm_awq.encode_llm_awq_v2(qw)),
    }
    for label, (selector, tensors) in encoded.items():
        named = {f"{MODULE}.{k}": v for k, v in tensors.items()} | {"model.norm.weight": norm}
        write(fuzz_weights.NAME, label, bytes([selector]) + save(named))


def safetensors_seeds() -> None:
    tensors = load_file(str(FIXTURES / "llama-gemm-g64" / "model.safetensors"))
    small = {k: v for k, v in tensors.items() if v.nbytes <= 512}
    write("safetensors", "fixture-small-tensors", save(dict(list(small.items())[:4]), metadata={"format": "pt"}))
    write("safetensors", "one-of-each-dtype", save({d: np.arange(3).astype(d) for d in ("<f2", "<f4", "i1", "<u2")}))
    write("safetensors", "empty", save({}))
    header = json.dumps({"x": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}}).encode()
    write("safetensors", "bf16", struct.pack("<Q", len(header)) + header + bytes(range(8)))


def index_seeds() -> None:
    a, b = fuzz_index.SHARDS
    valid = {"a.weight": a, "a.bias": a, "b.weight": b, "b.bias": b}
    cases = {
        "valid": {"metadata": {"total_size": 40}, "weight_map": valid},
        "linked": {"weight_map": {"c.weight": fuzz_index.LINKED, "c.bias": fuzz_index.LINKED}},
        "parent": {"weight_map": {"x.weight": "../outside/model.safetensors"}},
        "absolute": {"weight_map": {"y.weight": str(Path("/etc/passwd"))}},
        "config": {"weight_map": {"a.weight": "config.json"}},
        "wrong-shard": {"weight_map": {"a.weight": b, "b.weight": b}},
    }
    for label, index in cases.items():
        write(fuzz_index.NAME, label, json.dumps(index).encode())
    duplicate = b'{"weight_map": {"a.weight": "%s", "a.weight": "%s"}}' % (a.encode(), b.encode())
    write(fuzz_index.NAME, "duplicate-key", duplicate)


def config_seeds() -> None:
    from tests.fuzz import fuzz_config

    for selector, name in enumerate(fuzz_config.FIXTURE_NAMES):
        write("config", name, bytes([selector]) + (FIXTURES / name / "config.json").read_bytes())


def tokenizer_seeds() -> None:
    raw = json.loads((FIXTURES / "llama-gemm-g64" / "tokenizer.json").read_text())
    write("tokenizer", "fixture-llama", json.dumps(raw, separators=(",", ":")).encode())
    vocab = {"[UNK]": 0, "hello": 1, "world": 2}
    word_level = {
        "version": "1.0",
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"},
        "pre_tokenizer": {"type": "Whitespace"},
    }
    write("tokenizer", "word-level", json.dumps(word_level).encode())
    bpe = {"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}}
    write("tokenizer", "bpe", json.dumps(bpe).encode())


def chat_template_seeds() -> None:
    base = json.loads((FIXTURES / "llama-gemm-g64" / "tokenizer_config.json").read_text())
    base.pop("added_tokens_decoder", None)
    write("chat_template", "fixture-no-template", json.dumps(base).encode())
    for label, template in (("chatml", CHATML), ("llama3", LLAMA3), ("mistral", MISTRAL)):
        config = dict(base, chat_template=template, eos_token={"content": "</s>"})
        write("chat_template", label, json.dumps(config).encode())
    named = {"chat_template": [{"name": "default", "template": CHATML}]}
    write("chat_template", "named-list", json.dumps(named).encode())
    for i, template in enumerate(HOSTILE_TEMPLATES):
        write("chat_template", f"hostile-{i}", json.dumps({"chat_template": template}).encode())


def main() -> None:
    weights_seeds()
    safetensors_seeds()
    index_seeds()
    config_seeds()
    tokenizer_seeds()
    chat_template_seeds()


if __name__ == "__main__":
    main()
