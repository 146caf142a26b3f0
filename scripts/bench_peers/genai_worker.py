"""Worker for ONNX Runtime GenAI: its model builder's output folder, driven by its own Generator API.

    PEER_PYTHON scripts/bench_peers/genai_worker.py MODEL_DIR --threads 2

Runs in the peer's venv (onnxruntime-genai installed there).  See protocol.py for the requests it answers.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protocol import Loaded, logits_scorer, result, worker_main


def load(folder: Path, threads: int) -> Loaded:
    import onnxruntime_genai as og

    config = og.Config(str(folder))
    # The thread count lives in genai_config.json's session options; overlay it rather than edit the folder.
    overlay = {"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}
    config.overlay(json.dumps(overlay))
    model = og.Model(config)

    def run(ids: list[int], new_tokens: int) -> dict[str, Any]:
        params = og.GeneratorParams(model)
        length = len(ids) + new_tokens
        # Greedy; min_length = max_length so an end-of-sequence token cannot end the run early.
        params.set_search_options(do_sample=False, max_length=length, min_length=length)
        generator = og.Generator(model, params)
        start = time.perf_counter()
        generator.append_tokens(ids)  # runs the prefill forward pass
        prefill_s = time.perf_counter() - start
        new_ids = []
        decode_start = start
        ttft_s = 0.0
        for step in range(new_tokens):
            generator.generate_next_token()  # picks a token (after a one-token forward pass from step 1 on)
            new_ids.append(int(generator.get_next_tokens()[0]))
            if step == 0:
                decode_start = time.perf_counter()
                ttft_s = decode_start - start
        decode_s = time.perf_counter() - decode_start
        del generator
        return result(prefill_s, ttft_s, decode_s, new_ids)

    def logits(ids: list[int]) -> Any:
        # A fresh generator per window (an empty cache), sized to the window; append_tokens runs the forward pass
        # over all of it, and the decoder's "logits" output then holds every position's row, [1, T, vocab].
        params = og.GeneratorParams(model)
        params.set_search_options(do_sample=False, max_length=len(ids))
        generator = og.Generator(model, params)
        generator.append_tokens(ids)
        rows = generator.get_output("logits")[0]
        del generator
        return rows

    return Loaded(run, {"runtime": f"onnxruntime-genai {og.__version__}"}, score=logits_scorer(logits))


if __name__ == "__main__":
    sys.exit(worker_main(load, __doc__))
