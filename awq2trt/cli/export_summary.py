"""What `awq2trt inspect` reports about an exported folder, read from its ``awq2trt.json``.

Read as a plain JSON dict, tolerantly: inspect should describe any export, including ones written by an
older version that a runtime would refuse to open, so missing keys show as absent rather than failing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from awq2trt.cli.output import human_bytes
from awq2trt.errors import Awq2TrtError
from awq2trt.sidecar import SIDECAR_FILE
from awq2trt.tensorrt.engine_info import ENGINE_INFO_FILE, EngineInfo

# Format 1 kept the target's options at the top level; later formats group them under "target_options".
_FORMAT_1_TARGET_OPTIONS = ("accuracy_level", "lm_head")
_LAYER_INDEX = re.compile(r"\.\d+\.")


def read_sidecar_dict(folder: Path) -> dict[str, Any]:
    path = folder / SIDECAR_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise Awq2TrtError(path, expected="readable JSON", got=str(error)[:200] or type(error).__name__) from None
    if not isinstance(data, dict):
        raise Awq2TrtError(path, expected="a JSON object", got=type(data).__name__)
    return data


def describe_export(folder: Path) -> dict[str, Any]:
    """The export's target, passes, IO and sizes, as a plain dict (printed as a table or JSON)."""
    data = read_sidecar_dict(folder)
    options = data.get("target_options")
    if not isinstance(options, dict):
        options = {key: data[key] for key in _FORMAT_1_TARGET_OPTIONS if key in data}
    files = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}
    engine = None
    if (folder / ENGINE_INFO_FILE).is_file():  # `awq2trt build` wrote an engine here
        engine = EngineInfo.read(folder).to_json()
    return {
        "path": str(folder),
        "kind": "export",
        "format_version": data.get("format_version"),
        "target": data.get("target"),
        "target_options": options,
        "dtype": data.get("dtype"),
        "model_type": data.get("model_type"),
        "num_layers": data.get("num_layers"),
        "num_attention_heads": data.get("num_attention_heads"),
        "num_kv_heads": data.get("num_kv_heads"),
        "hidden_size": data.get("hidden_size"),
        "vocab_size": data.get("vocab_size"),
        "quantization": data.get("quantization"),
        "passes": data.get("passes"),
        "pass_nodes": data.get("pass_nodes"),
        "inputs": data.get("inputs"),
        "outputs": data.get("outputs"),
        "kv_cache": data.get("kv_cache"),
        "kernels": data.get("kernels"),  # a custom-op library the graph needs at run time (ort-kernels)
        "model": data.get("model"),
        "external_data": data.get("external_data"),
        "engine": engine,
        "files": files,
        "total_bytes": sum(files.values()),
    }


def export_rows(info: Mapping[str, Any]) -> list[tuple[str, object]]:
    """The description as (label, value) rows for people."""
    options = ", ".join(f"{k} {v}" for k, v in info["target_options"].items())
    rows: list[tuple[str, object]] = [
        ("path", info["path"]),
        ("format", f"awq2trt export (awq2trt.json version {_shown(info['format_version'])})"),
        ("target", _shown(info["target"]) + (f" ({options})" if options else "")),
        ("architecture", f"{_shown(info['model_type'])}, {_shown(info['num_layers'])} layers"),
        ("heads / kv heads", f"{_shown(info['num_attention_heads'])} / {_shown(info['num_kv_heads'])}"),
        ("dtype", _shown(info["dtype"])),
        ("quantization", _quantization(info["quantization"])),
        ("passes", _passes(info["passes"])),
        ("nodes", _nodes(info["pass_nodes"])),
    ]
    if kernels := info.get("kernels"):
        rows.append(("needs", _kernels(kernels)))
    if engine := info.get("engine"):
        rows.append(
            (
                "engine",
                f"{engine['engine']} (TensorRT {engine['tensorrt_version']}, {engine['dtype']}): batch <="
                f" {engine['max_batch']}, prompt <= {engine['max_seq']}, context <= {engine['max_context']} tokens",
            )
        )
    rows += [("inputs", line) for line in _io_lines(info["inputs"])]
    rows += [("outputs", line) for line in _io_lines(info["outputs"])]
    rows += [("files", f"{name} {human_bytes(size)}") for name, size in info["files"].items()]
    rows.append(("total size", human_bytes(info["total_bytes"])))
    return rows


def _shown(value: object) -> str:
    return "-" if value is None else str(value)


def _quantization(quant: object) -> str:
    if not isinstance(quant, dict):
        return "-"
    groups = quant.get("group_sizes")
    group = ", ".join(str(g) for g in groups) if isinstance(groups, list) else _shown(groups)
    zero = quant.get("zero_point")
    zero_text = "-" if zero is None else ("zero points" if zero else "symmetric")
    return (
        f"int{_shown(quant.get('bits'))}, group {group}, {zero_text}, {_shown(quant.get('int4_nodes'))} int4 nodes"
        f" (from {_shown(quant.get('source_format'))})"
    )


def _kernels(kernels: object) -> str:
    if not isinstance(kernels, dict):
        return "-"
    return (
        f"kernel library {_shown(kernels.get('library'))} (ABI {_shown(kernels.get('abi_version'))}):"
        " --kernels PATH, $AWQ2TRT_ORT_KERNELS, or the copy `pip install .` builds"
    )


def _passes(passes: object) -> str:
    if isinstance(passes, dict):  # rewrites per pass, in running order
        return ", ".join(f"{name} {count}" for name, count in passes.items()) or "none"
    if isinstance(passes, list):
        return ", ".join(str(name) for name in passes) or "none"
    return "-"


def _nodes(pass_nodes: object) -> str:
    if not isinstance(pass_nodes, dict) or not pass_nodes:
        return "-"
    counts = list(pass_nodes.values())
    return f"{counts[0]} traced -> {counts[-1]} after the passes"


def _io_lines(specs: object) -> list[str]:
    """One line per name pattern: the 2 x layers cache tensors read as one line with their count."""
    if not isinstance(specs, dict):
        return ["-"]
    groups: dict[tuple[str, str], int] = {}
    for name, spec in specs.items():
        pattern = _LAYER_INDEX.sub(".{i}.", name)
        if isinstance(spec, dict):
            shape = spec.get("shape")
            dims = ", ".join(str(d) for d in shape) if isinstance(shape, list) else "?"
            text = f"{_shown(spec.get('dtype'))} [{dims}]"
        else:
            text = "?"
        groups[(pattern, text)] = groups.get((pattern, text), 0) + 1
    return [f"{pattern} {text}" + (f" x{count}" if count > 1 else "") for (pattern, text), count in groups.items()]
