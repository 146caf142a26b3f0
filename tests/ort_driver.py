"""A deliberately plain ONNX Runtime driver for the exported IR graph (test helper, not the product runtime):
feeds the KV cache back by hand, so the tests check the graph, not a runtime's cleverness."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort


class IrSession:
    def __init__(self, folder: Path) -> None:
        self.sidecar = json.loads((folder / "awq2trt.json").read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        options.log_severity_level = 3  # fp16 graphs make ORT list every node it cannot constant-fold
        # The trt graph's DequantizeLinear + MatMul pairs become MatMulNBits here: level 0 keeps them exact.
        options.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "0")
        self.session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.layers = self.sidecar["num_layers"]
        self.takes_keep = any(i.name == "num_logits_to_keep" for i in self.session.get_inputs())
        self.dtype = np.float16 if self.sidecar["dtype"] == "float16" else np.float32

    def empty_cache(self, batch: int) -> list[np.ndarray]:
        shape = (batch, self.sidecar["num_kv_heads"], 0, self.sidecar["head_dim"])
        return [np.zeros(shape, self.dtype) for _ in range(2 * self.layers)]

    def step(
        self,
        ids: np.ndarray,
        mask: np.ndarray,
        positions: np.ndarray,
        cache: list[np.ndarray],
        keep: int = 0,
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        feeds = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
        if self.takes_keep:  # 0 = every position's logits
            feeds["num_logits_to_keep"] = np.array([keep], np.int64)
        for i in range(self.layers):
            feeds[f"past_key_values.{i}.key"] = cache[2 * i]
            feeds[f"past_key_values.{i}.value"] = cache[2 * i + 1]
        out = self.session.run(None, feeds)
        return out[0], out[1:]

    def prefill(
        self, ids: np.ndarray, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        """Left-padded batch prefill; positions count real tokens only (as transformers does)."""
        mask = np.ones_like(ids) if mask is None else mask
        positions = np.clip(np.cumsum(mask, axis=1) - 1, 0, None).astype(np.int64)
        logits, cache = self.step(ids, mask, positions, self.empty_cache(ids.shape[0]))
        return logits, cache, mask

    def greedy(
        self, ids: np.ndarray, steps: int, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Greedy continuation of a batch; returns new ids [batch, steps] and the logits of every step."""
        logits, cache, mask = self.prefill(ids, mask)
        every = [logits[:, -1]]
        new = []
        for _ in range(steps):
            token = every[-1].argmax(-1).astype(np.int64)[:, None]
            new.append(token)
            position = mask.sum(axis=1, keepdims=True).astype(np.int64)
            mask = np.concatenate([mask, np.ones_like(token)], axis=1)
            logits, cache = self.step(token, mask, position, cache)
            every.append(logits[:, -1])
        return np.concatenate(new, axis=1), every
