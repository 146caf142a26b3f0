"""Worker for transformers in fp32 with eager attention on a dense HF folder (runs in the project's Python).

    python scripts/bench_peers/transformers_worker.py MODEL_DIR --threads 2

See protocol.py for the requests it answers.  The loop is the one ``generate`` runs for greedy search with a
KV cache (including ``logits_to_keep=1``: only the last position goes through the output head), written out
so that prefill and decode can be timed apart.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protocol import Loaded, logits_scorer, result, worker_main


def load(folder: Path, threads: int) -> Loaded:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager")
    model.eval()

    @torch.inference_mode()
    def run(ids: list[int], new_tokens: int) -> dict[str, Any]:
        tokens = torch.tensor([ids], dtype=torch.long)
        start = time.perf_counter()
        out = model(input_ids=tokens, use_cache=True, logits_to_keep=1)
        prefill_s = time.perf_counter() - start
        cache = out.past_key_values
        token = out.logits[:, -1].argmax(dim=-1, keepdim=True)
        new_ids = [int(token)]
        decode_start = time.perf_counter()
        ttft_s = decode_start - start
        for _ in range(new_tokens - 1):
            out = model(input_ids=token, past_key_values=cache, use_cache=True, logits_to_keep=1)
            cache = out.past_key_values
            token = out.logits[:, -1].argmax(dim=-1, keepdim=True)
            new_ids.append(int(token))
        return result(prefill_s, ttft_s, time.perf_counter() - decode_start, new_ids)

    @torch.inference_mode()
    def logits(ids: list[int]) -> Any:
        # No cache and every position through the head: the window's full logits, [T, vocab].
        out = model(input_ids=torch.tensor([ids], dtype=torch.long), use_cache=False)
        return out.logits[0].float().numpy()

    info = {"runtime": f"transformers {transformers.__version__}, torch {torch.__version__}, fp32 eager"}
    return Loaded(run, info, score=logits_scorer(logits))


if __name__ == "__main__":
    sys.exit(worker_main(load, __doc__))
