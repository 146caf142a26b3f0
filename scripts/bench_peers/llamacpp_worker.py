"""Worker for llama.cpp through llama-cpp-python (built from source in its own venv), on a GGUF file.

    PEER_PYTHON scripts/bench_peers/llamacpp_worker.py MODEL.gguf --threads 2

See protocol.py for the requests it answers.  Greedy picks are an argmax over the last position's logits,
as in the other workers, rather than llama.cpp's sampler chain (which would add its own per-token work).

Perplexity needs every position's logits.  ``Llama(logits_all=True)`` would give them, but for every eval, the
timed runs' too (each prefill would then run the output head over all its positions and copy the rows out), and
with a scores buffer of n_ctx x vocab floats; instead only the perplexity windows ask for every row, batch by
batch, through llama-cpp-python's own batch and context objects (``_batch``, ``_ctx``: not public API, so a
version that renames them answers the perplexity request with an error, and the table says n/a).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protocol import Loaded, logits_scorer, result, worker_main

CONTEXT = 2048  # the longest request (512 prompt tokens, or a chat prompt plus the new tokens) must fit
BATCH = 512  # one prefill batch for a 512-token prompt, as the other engines run it in one forward pass


def load(gguf: Path, threads: int) -> Loaded:
    import llama_cpp
    import numpy as np

    llm = llama_cpp.Llama(
        model_path=str(gguf),
        n_ctx=CONTEXT,
        n_batch=BATCH,
        n_ubatch=BATCH,
        n_threads=threads,
        n_threads_batch=threads,
        logits_all=False,
        verbose=False,
    )
    n_vocab = llm.n_vocab()

    def pick() -> int:
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
        return int(np.argmax(logits))

    def run(ids: list[int], new_tokens: int) -> dict[str, Any]:
        if len(ids) + new_tokens > CONTEXT:
            raise ValueError(f"{len(ids)} + {new_tokens} tokens exceed the context of {CONTEXT}")
        llm.reset()  # the next eval drops the whole KV cache
        start = time.perf_counter()
        llm.eval(ids)
        prefill_s = time.perf_counter() - start
        new_ids = [pick()]
        decode_start = time.perf_counter()
        ttft_s = decode_start - start
        for _ in range(new_tokens - 1):
            llm.eval([new_ids[-1]])
            new_ids.append(pick())
        return result(prefill_s, ttft_s, time.perf_counter() - decode_start, new_ids)

    def logits(ids: list[int]) -> Any:
        if len(ids) > CONTEXT:
            raise ValueError(f"a {len(ids)}-token window exceeds the context of {CONTEXT}")
        llm.reset()
        llm._ctx.kv_cache_seq_rm(-1, 0, -1)  # an empty cache, as every engine scores its windows
        rows = []
        for start in range(0, len(ids), BATCH):
            chunk = ids[start : start + BATCH]
            llm._batch.set_batch(batch=chunk, n_past=start, logits_all=True)  # an output row for every token
            llm._ctx.decode(llm._batch)
            out = llama_cpp.llama_get_logits(llm.ctx)
            rows.append(np.ctypeslib.as_array(out, shape=(len(chunk), n_vocab)).copy())
        llm.reset()  # the next run's eval clears the cache from position 0
        return np.concatenate(rows)

    info = {"runtime": f"llama-cpp-python {llama_cpp.__version__}", "system_info": system_info(llama_cpp)}
    return Loaded(run, info, score=logits_scorer(logits))


def system_info(llama_cpp: Any) -> str:
    """llama.cpp's own list of the CPU features it was built with (shows the AVX-512 build in the JSON)."""
    try:
        return llama_cpp.llama_print_system_info().decode(errors="replace").strip()
    except Exception:
        return ""


if __name__ == "__main__":
    sys.exit(worker_main(load, __doc__))
