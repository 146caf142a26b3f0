"""Open a Hugging Face checkpoint folder and hand out `QuantWeight`s and dense tensors by module name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from awq2trt.checkpoint.awq_config import AwqConfig
from awq2trt.checkpoint.ct_config import CompressedTensorsConfig
from awq2trt.checkpoint.formats import awq_gemm, awq_gemv, compressed_tensors, llm_awq
from awq2trt.checkpoint.weight_files import WeightFiles
from awq2trt.errors import Awq2TrtError, folder_listing
from awq2trt.quant_weight import QuantWeight
from awq2trt.untrusted_json import read_json_file

CONFIG_NAME = "config.json"
QUANT_METHODS = ("awq", "compressed-tensors")

# Format label -> the tensor suffix that marks a module as quantized in that format.
FORMAT_MARKERS = {
    "awq-gemm": ".qweight",
    "awq-gemv": ".qweight",
    "llm-awq-v0": ".qweight",
    "llm-awq-v1": ".qweight",
    "llm-awq-v2": ".qweight",
    "compressed-tensors": ".weight_packed",
}
FORMAT_TITLES = {
    "dense": "dense (unquantized)",
    "awq-gemm": "AutoAWQ GEMM",
    "awq-gemv": "AutoAWQ GEMV",
    "llm-awq-v0": "llm-awq (GEMM layout, 2023-05..09)",
    "llm-awq-v1": "llm-awq (GEMV layout, 2023-09..2024-02)",
    "llm-awq-v2": "llm-awq (int16 interleaved, scaled zeros)",
    "compressed-tensors": "compressed-tensors pack-quantized",
}


def read_config(folder: Path) -> dict[str, Any]:
    """``config.json`` as a dict, with every way of getting it wrong reported against the file."""
    if not folder.exists():
        raise Awq2TrtError(folder, expected="a checkpoint folder", got="no such path")
    if not folder.is_dir():
        raise Awq2TrtError(folder, expected="a checkpoint folder", got="a file")
    path = folder / CONFIG_NAME
    if path.is_dir():
        raise Awq2TrtError(path, expected="a JSON file", got="a folder")
    if not path.is_file():
        raise Awq2TrtError(
            path, expected="a Hugging Face config.json", got=f"missing (folder holds {folder_listing(folder)})"
        )
    config = read_json_file(path)
    if not isinstance(config, dict):
        raise Awq2TrtError(path, expected="a JSON object", got=type(config).__name__)
    # Every stage looks the model type up in a table: a list or object there is not even hashable.
    if not isinstance(config.get("model_type", ""), str):
        raise Awq2TrtError(f"{path}: model_type", expected="a string", got=type(config["model_type"]).__name__)
    return config


@dataclass(frozen=True)
class LinearLayout:
    """Where one quantized Linear lives and how to decode it."""

    name: str
    format: str
    group_size: int
    in_features: int
    out_features: int


class Checkpoint:
    """A checkpoint folder: its config, its quantization scheme and lazy access to its weights."""

    def __init__(self, folder: str | Path, *, allow_pickle: bool = False) -> None:
        self.folder = Path(folder)
        self.config = read_config(self.folder)
        self.model_type = str(self.config.get("model_type", ""))
        qc = self.config.get("quantization_config")
        self.awq_config: AwqConfig | None = None
        self.ct_config: CompressedTensorsConfig | None = None
        if qc is None:
            self.format = "dense"
        elif not isinstance(qc, dict):
            raise Awq2TrtError(self.folder / CONFIG_NAME, expected="quantization_config to be an object", got=qc)
        else:
            method = str(qc.get("quant_method", "")).lower()
            if method == "awq":
                self.awq_config = _with_file(self.folder, AwqConfig.from_dict, qc)
            elif method == "compressed-tensors":
                self.ct_config = _with_file(self.folder, CompressedTensorsConfig.from_dict, qc)
            else:
                raise Awq2TrtError(
                    f"{self.folder / CONFIG_NAME}: quantization_config.quant_method",
                    expected=" or ".join(QUANT_METHODS),
                    got=qc.get("quant_method"),
                )
        self.weights = WeightFiles(self.folder, allow_pickle=allow_pickle)
        if qc is not None:
            self.format = self._detect_format()
        self.linears = self._find_quantized_linears()

    def _detect_format(self) -> str:
        if self.ct_config is not None:
            return "compressed-tensors"
        assert self.awq_config is not None
        if self.awq_config.backend == "llm-awq":
            return self._detect_llm_awq_layout()
        return "awq-gemv" if self.awq_config.version == "gemv" else "awq-gemm"

    def _detect_llm_awq_layout(self) -> str:
        """llm-awq wrote three layouts over time; its config does not say which, the tensors do."""
        first = next((n[: -len(".qweight")] for n in self.weights.names() if n.endswith(".qweight")), None)
        if first is None:
            raise Awq2TrtError(
                self.folder, expected="quantized Linears (tensors named *.qweight) for llm-awq", got="none"
            )
        prefix = first + "."
        tensors = {
            n[len(prefix) :]: (self.weights.shape(n), self.weights.dtype_name(n))
            for n in self.weights.names()
            if n.startswith(prefix)
        }
        return "llm-awq-" + llm_awq.detect_llm_awq_layout(tensors, name=first)

    def _find_quantized_linears(self) -> dict[str, LinearLayout]:
        if self.format == "dense":
            return {}
        marker = FORMAT_MARKERS[self.format]
        linears = {}
        for tensor in self.weights.names():
            if tensor.endswith(marker):
                name = tensor[: -len(marker)]
                linears[name] = self._layout(name)
        if not linears:
            raise Awq2TrtError(
                self.folder, expected=f"quantized Linears (tensors named *{marker}) for {self.title}", got="none"
            )
        return linears

    def _layout(self, name: str) -> LinearLayout:
        shape = self.weights.shape
        marker = FORMAT_MARKERS[self.format]
        qshape = shape(name + marker)
        if len(qshape) != 2 and self.format != "compressed-tensors":
            raise Awq2TrtError(f"{name}{marker}", expected="a 2-D tensor", got=qshape)
        if self.format in ("awq-gemm", "llm-awq-v0"):
            k, n = qshape[0], self._require(name, "scales", ndim=2)[1]
        elif self.format in ("awq-gemv", "llm-awq-v1"):
            n, k = qshape[0], 8 * qshape[1]
        elif self.format == "llm-awq-v2":
            k, n = qshape[1], self._require(name, "scales", ndim=2)[1]
        else:
            wshape = self.weights.get(self._tensor(name, "weight_shape"))
            if wshape.shape != (2,):
                raise Awq2TrtError(f"{name}.weight_shape", expected="2 values [out, in]", got=list(wshape.shape))
            n, k = (int(v) for v in wshape)
        group = self._group_size(name, k)
        return LinearLayout(name, self.format, group, int(k), int(n))

    def _group_size(self, name: str, in_features: int) -> int:
        if self.awq_config is not None:
            g = self.awq_config.effective_group_size
        else:
            assert self.ct_config is not None
            scheme = self.ct_config.scheme_for(name)
            if scheme is None:
                raise Awq2TrtError(
                    name, expected="a config_groups target for this packed weight", got="ignored/untargeted"
                )
            g = scheme.group_size
        g = in_features if g is None else g
        if in_features % g != 0:
            raise Awq2TrtError(
                name, expected=f"a group size that divides in_features={in_features}", got=f"group_size={g}"
            )
        return g

    def _tensor(self, module: str, suffix: str) -> str:
        name = f"{module}.{suffix}"
        if name not in self.weights:
            raise Awq2TrtError(
                name, expected=f"this tensor ({self.title} stores one per quantized Linear)", got="missing"
            )
        return name

    def _require(self, module: str, suffix: str, ndim: int) -> list[int]:
        name = self._tensor(module, suffix)
        s = self.weights.shape(name)
        if len(s) != ndim:
            raise Awq2TrtError(name, expected=f"a {ndim}-D tensor", got=s)
        return s

    @property
    def title(self) -> str:
        return FORMAT_TITLES[self.format]

    @property
    def zero_point(self) -> bool | None:
        if self.awq_config is not None:
            return self.awq_config.zero_point
        if self.ct_config is not None:
            return not all(s.symmetric for s in self.ct_config.schemes)
        return None

    def quant_weight(self, name: str) -> QuantWeight:
        """Decode the quantized Linear *name* (e.g. ``model.layers.0.self_attn.q_proj``)."""
        layout = self.linears.get(name)
        if layout is None:
            raise Awq2TrtError(name, expected="a quantized Linear of this checkpoint", got="not quantized or absent")
        get = self.weights.get
        t = lambda suffix: get(self._tensor(name, suffix))  # noqa: E731
        g, fmt = layout.group_size, layout.format
        if fmt == "awq-gemm":
            return awq_gemm.decode_gemm(t("qweight"), t("qzeros"), t("scales"), group_size=g, name=name)
        if fmt == "awq-gemv":
            return awq_gemv.decode_gemv(
                t("qweight"), t("qzeros"), t("scales"), group_size=g, in_features=layout.in_features, name=name
            )
        if fmt == "llm-awq-v0":
            return llm_awq.decode_llm_awq_v0(t("qweight"), t("qzeros"), t("scales"), group_size=g, name=name)
        if fmt == "llm-awq-v1":
            return llm_awq.decode_llm_awq_v1(
                t("qweight"), t("qzeros"), t("scales"), group_size=g, in_features=layout.in_features, name=name
            )
        if fmt == "llm-awq-v2":
            return llm_awq.decode_llm_awq_v2(
                t("qweight"), t("scales"), t("scaled_zeros"), group_size=g, in_features=layout.in_features, name=name
            )
        zp_name = f"{name}.weight_zero_point"
        zero_point = get(zp_name) if zp_name in self.weights else None
        scheme = self.ct_config.scheme_for(name) if self.ct_config else None
        if zero_point is None and scheme is not None and not scheme.symmetric:
            self._tensor(name, "weight_zero_point")  # raises: asymmetric scheme needs its zero points
        return compressed_tensors.decode_compressed(
            t("weight_packed"), t("weight_scale"), zero_point, t("weight_shape"), group_size=g, name=name
        )

    def quantized_tensor_names(self) -> set[str]:
        """Every tensor that belongs to a quantized Linear's packed form (everything else is dense)."""
        out = set()
        for module in self.linears:
            prefix = module + "."
            out.update(n for n in self.weights.names() if n.startswith(prefix) and n[len(prefix) :] != "bias")
        return out

    def dense_tensor_names(self) -> list[str]:
        packed = self.quantized_tensor_names()
        return [n for n in self.weights.names() if n not in packed]

    def tensor(self, name: str) -> np.ndarray:
        return self.weights.get(name)


def _with_file(folder: Path, parse: Any, data: dict[str, Any]) -> Any:
    """Run a config parser, prefixing its errors with the config file so users know where to look."""
    try:
        return parse(data)
    except Awq2TrtError as exc:
        raise Awq2TrtError(
            f"{folder / CONFIG_NAME}: {exc.where}", expected=exc.expected, got=exc.got, detail=exc.detail
        ) from None


def open_checkpoint(path: str | Path, *, allow_pickle: bool = False) -> Checkpoint:
    """Open a checkpoint folder (AWQ, compressed-tensors or dense) for reading."""
    return Checkpoint(path, allow_pickle=allow_pickle)
