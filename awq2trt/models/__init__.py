"""Models awq2trt can prepare on its own, with no hub: the default is SmolLM2-135M-Instruct."""

from awq2trt.models.default_model import DEFAULT_MODEL_NAME, cache_dir, prepare_default_model

__all__ = ["DEFAULT_MODEL_NAME", "cache_dir", "prepare_default_model"]
