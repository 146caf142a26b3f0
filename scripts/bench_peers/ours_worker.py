"""Worker for our exported ORT graph (``ort`` or ``ort-kernels``), run by ``awq2trt.runtime.OrtModel``
(in the project's Python).

    python scripts/bench_peers/ours_worker.py MODEL_DIR --threads 2

See protocol.py for the requests it answers.  Perplexity is the project's own ``awq2trt.evaluate.perplexity``
over ``OrtModel.logits`` (what ``awq2trt demo`` and ``ort_text_perplexity`` quote), on the parent's ids.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protocol import Loaded, Windows, result, worker_main


def load(folder: Path, threads: int) -> Loaded:
    import onnxruntime

    from awq2trt.runtime import OrtModel

    model = OrtModel.open(folder, threads=threads)

    def run(ids: list[int], new_tokens: int) -> dict[str, Any]:
        # The runtime's own generate loop, greedy by default; stop_at_eos=False so every engine decodes N tokens.
        generation = model.generate(ids, max_new_tokens=new_tokens, stop_at_eos=False)
        t = generation.timing
        return result(t.prefill_s, t.ttft_s, t.decode_s, generation.ids[0])

    info = {
        "runtime": f"onnxruntime {onnxruntime.__version__}",
        "accuracy_level": model.sidecar.target_options.get("accuracy_level"),
        # ort-kernels exports: which kernel library ran (the runtime found it: $AWQ2TRT_ORT_KERNELS or the package)
        "kernels": str(model.kernels.path) if model.kernels is not None else None,
    }
    return Loaded(run, info, score=lambda windows: score(model, windows))


def score(model: Any, windows: Windows) -> tuple[float, int]:
    """(total NLL, tokens scored) by the project's perplexity, which cuts its windows itself."""
    from awq2trt.evaluate.perplexity import perplexity, window_spans

    # The parent's spans come from the same function; a mismatch would mean the peers scored other targets.
    if window_spans(len(windows.ids), windows.window, windows.stride) != windows.spans:
        raise ValueError("the request's spans are not awq2trt's window_spans of its ids, window and stride")
    measured = perplexity(windows.ids, model.logits, window=windows.window, stride=windows.stride)
    return measured.tokens_scored * math.log(measured.perplexity), measured.tokens_scored


if __name__ == "__main__":
    sys.exit(worker_main(load, __doc__))
