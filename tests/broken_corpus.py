"""A corpus of broken checkpoint inputs: every one is a user mistake that must end in one clear error line.

Each `BrokenCase` builds its input under a pytest ``tmp_path`` (copying one of the valid third-party
fixtures in ``tests/data/peers/awq`` and corrupting the copy) and says which file or tensor the CLI's
``error: <where>: expected <x>, got <y>`` line must name.  The fixtures themselves are never modified.
"""

from __future__ import annotations

import json
import random
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

FIXTURES = Path(__file__).resolve().parent / "data" / "peers" / "awq"
# What a user copies around with a checkpoint; the fixtures' reference/ folder is left out on purpose.
CHECKPOINT_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
)
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
INDEX = "model.safetensors.index.json"
PICKLE = "pytorch_model.bin"

GEMM = "llama-gemm-g64"
GEMV = "llama-gemv-g64"
CT = "llama-ct-g128"
QWEN = "qwen2-gemm-g128"


@dataclass(frozen=True)
class BrokenCase:
    """One broken input: ``build(tmp_path)`` returns the path to pass to ``awq2trt inspect``."""

    id: str
    build: Callable[[Path], Path]
    expect: tuple[str, ...]  # substrings the single error line must contain (the file or tensor it names)
    args: tuple[str, ...] = ()  # extra CLI options, e.g. --allow-pickle


# ------------------------------------------------------------------------------------------------ helpers


def copy_fixture(tmp_path: Path, name: str) -> Path:
    """A private, writable copy of fixture *name* (config, weights and tokenizer files only)."""
    src = FIXTURES / name
    if not src.is_dir():
        pytest.fail(f"third-party fixture {src} is missing (tests/data/peers/ is part of the repository)")
    dst = tmp_path / name
    dst.mkdir()
    for file in CHECKPOINT_FILES:
        if (src / file).is_file():
            shutil.copyfile(src / file, dst / file)
    return dst


def edit_config(folder: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    config = json.loads((folder / CONFIG).read_text())
    edit(config)
    (folder / CONFIG).write_text(json.dumps(config, indent=2))
    return folder


def edit_tensors(folder: Path, edit: Callable[[dict[str, np.ndarray]], None]) -> Path:
    tensors = load_file(str(folder / WEIGHTS))
    edit(tensors)
    save_file(tensors, str(folder / WEIGHTS), metadata={"format": "pt"})
    return folder


def read_raw(path: Path) -> tuple[dict[str, Any], bytes]:
    """(header, data) of a safetensors file, parsed by hand so the header can be corrupted on purpose."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def write_raw(path: Path, header: dict[str, Any], data: bytes) -> None:
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)


def edit_header(folder: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    header, data = read_raw(folder / WEIGHTS)
    edit(header)
    write_raw(folder / WEIGHTS, header, data)
    return folder


def config_case(fixture: str, edit: Callable[[dict[str, Any]], None]) -> Callable[[Path], Path]:
    return lambda tmp: edit_config(copy_fixture(tmp, fixture), edit)


def tensor_case(fixture: str, edit: Callable[[dict[str, np.ndarray]], None]) -> Callable[[Path], Path]:
    return lambda tmp: edit_tensors(copy_fixture(tmp, fixture), edit)


DROP = object()  # qc_set(key=DROP) deletes the key


def qc_set(**changes: Any) -> Callable[[dict[str, Any]], None]:
    """Set (or, with the value `DROP`, delete) keys of ``quantization_config``."""

    def edit(config: dict[str, Any]) -> None:
        qc = config["quantization_config"]
        for key, value in changes.items():
            if value is DROP:
                qc.pop(key, None)
            else:
                qc[key] = value

    return edit


def ct_weights_set(**changes: Any) -> Callable[[dict[str, Any]], None]:
    """Set keys of the compressed-tensors group_0 ``weights`` scheme."""

    def edit(config: dict[str, Any]) -> None:
        config["quantization_config"]["config_groups"]["group_0"]["weights"].update(changes)

    return edit


def set_keys(**changes: Any) -> Callable[[dict[str, Any]], None]:
    return lambda config: config.update(changes)


def drop(*names: str) -> Callable[[dict[str, np.ndarray]], None]:
    def edit(tensors: dict[str, np.ndarray]) -> None:
        for name in names:
            del tensors[name]

    return edit


def replace(name: str, make: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict[str, np.ndarray]], None]:
    def edit(tensors: dict[str, np.ndarray]) -> None:
        tensors[name] = np.ascontiguousarray(make(tensors[name]))

    return edit


def poison(name: str, value: float, index: tuple[int, ...]) -> Callable[[dict[str, np.ndarray]], None]:
    def make(a: np.ndarray) -> np.ndarray:
        a = a.copy()
        a[index] = value
        return a

    return replace(name, make)


# -------------------------------------------------------------------------------- folders and config.json


def nonexistent(tmp: Path) -> Path:
    return tmp / "no-such-checkpoint"


def file_not_folder(tmp: Path) -> Path:
    path = tmp / "checkpoint.safetensors"
    path.write_bytes(b"not a folder")
    return path


def empty_folder(tmp: Path) -> Path:
    path = tmp / "empty-checkpoint"
    path.mkdir()
    return path


def missing_config(tmp: Path) -> Path:
    folder = copy_fixture(tmp, GEMM)
    (folder / CONFIG).unlink()
    return folder


def config_text(text: str | bytes) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        folder = copy_fixture(tmp, GEMM)
        (folder / CONFIG).write_bytes(text if isinstance(text, bytes) else text.encode())
        return folder

    return build


def config_is_folder(tmp: Path) -> Path:
    folder = copy_fixture(tmp, GEMM)
    (folder / CONFIG).unlink()
    (folder / CONFIG).mkdir()
    return folder


# ---------------------------------------------------------------------------------------- safetensors file


def truncated_in_data(tmp: Path) -> Path:
    folder = copy_fixture(tmp, GEMM)
    path = folder / WEIGHTS
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return folder


def truncated_in_header(tmp: Path) -> Path:
    folder = copy_fixture(tmp, GEMM)
    path = folder / WEIGHTS
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    path.write_bytes(raw[: 8 + n // 2])
    return folder


def weights_bytes(content: bytes) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        folder = copy_fixture(tmp, GEMM)
        (folder / WEIGHTS).write_bytes(content)
        return folder

    return build


def header_json(text: bytes) -> Callable[[Path], Path]:
    """model.safetensors whose 8-byte length is right but whose header is *text*."""

    def build(tmp: Path) -> Path:
        folder = copy_fixture(tmp, GEMM)
        (folder / WEIGHTS).write_bytes(struct.pack("<Q", len(text)) + text + b"\0" * 64)
        return folder

    return build


def trailing_garbage(tmp: Path) -> Path:
    folder = copy_fixture(tmp, GEMM)
    with (folder / WEIGHTS).open("ab") as fh:
        fh.write(b"\0" * 100)
    return folder


def header_edit(edit: Callable[[dict[str, Any]], None]) -> Callable[[Path], Path]:
    return lambda tmp: edit_header(copy_fixture(tmp, GEMM), edit)


def _shape_disagrees(header: dict[str, Any]) -> None:
    header["model.norm.weight"]["shape"] = [512]  # data_offsets still hold 256 fp16 values


def _offsets_short(header: dict[str, Any]) -> None:
    header["model.norm.weight"]["data_offsets"] = [0]


def _shape_not_list(header: dict[str, Any]) -> None:
    header["model.norm.weight"]["shape"] = "abc"


def _dtype_u32(header: dict[str, Any]) -> None:
    header["model.layers.0.self_attn.q_proj.qweight"]["dtype"] = "U32"  # same byte size as I32


def no_weights(tmp: Path) -> Path:
    folder = copy_fixture(tmp, GEMM)
    (folder / WEIGHTS).unlink()
    return folder


# -------------------------------------------------------------------------------------------- pickle files


def pickle_state(tmp: Path, fixture: str = GEMM, wrap: Callable[[dict[str, Any]], Any] = lambda s: s) -> Path:
    """The fixture's weights as a torch.save'd ``pytorch_model.bin`` (no safetensors left)."""
    import torch

    folder = copy_fixture(tmp, fixture)
    state = {k: torch.from_numpy(v) for k, v in load_file(str(folder / WEIGHTS)).items()}
    torch.save(wrap(state), folder / PICKLE)
    (folder / WEIGHTS).unlink()
    return folder


def pickle_only(tmp: Path) -> Path:
    return pickle_state(tmp)


def pickle_nested(tmp: Path) -> Path:
    return pickle_state(tmp, wrap=lambda s: {"state_dict": s})  # the Lightning / training-script layout


def pickle_list(tmp: Path) -> Path:
    return pickle_state(tmp, wrap=lambda s: list(s.values()))


def pickle_extra_entry(tmp: Path) -> Path:
    return pickle_state(tmp, wrap=lambda s: {**s, "epoch": 3})  # a training script saved a counter too


def pickle_empty_file(tmp: Path) -> Path:
    folder = copy_fixture(tmp, GEMM)
    (folder / WEIGHTS).unlink()
    (folder / PICKLE).write_bytes(b"")
    return folder


def pickle_garbage(tmp: Path) -> Path:
    folder = copy_fixture(tmp, GEMM)
    (folder / WEIGHTS).unlink()
    (folder / PICKLE).write_bytes(random.Random(1).randbytes(2048))
    return folder


# --------------------------------------------------------------------------------------------- shard index


def index_case(content: str | dict[str, Any]) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        folder = copy_fixture(tmp, GEMM)
        text = content if isinstance(content, str) else json.dumps(content)
        (folder / INDEX).write_text(text)
        return folder

    return build


def index_missing_shard(tmp: Path) -> Path:
    folder = copy_fixture(tmp, GEMM)
    names = [n for n in read_raw(folder / WEIGHTS)[0] if n != "__metadata__"]
    weight_map = {n: WEIGHTS for n in names}
    weight_map["model.norm.weight"] = "model-00002-of-00002.safetensors"
    (folder / INDEX).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


# -------------------------------------------------------------------------------------------------- corpus

L0 = "model.layers.0.self_attn.q_proj"
L1_DOWN = "model.layers.1.mlp.down_proj"

CASES: tuple[BrokenCase, ...] = (
    # --- the path itself
    BrokenCase("nonexistent-path", nonexistent, ("no-such-checkpoint",)),
    BrokenCase("file-not-folder", file_not_folder, ("checkpoint.safetensors",)),
    BrokenCase("empty-folder", empty_folder, ("empty-checkpoint", CONFIG)),
    # --- config.json
    BrokenCase("config-missing", missing_config, (CONFIG,)),
    BrokenCase("config-invalid-json", config_text('{"model_type": "llama",'), (CONFIG,)),
    BrokenCase("config-json-list", config_text('["model_type", "llama"]'), (CONFIG,)),
    BrokenCase("config-not-utf8", config_text(b'{"model_type": "\xff\xfe"}'), (CONFIG,)),
    BrokenCase("config-is-folder", config_is_folder, (CONFIG,)),
    BrokenCase("config-quantization-config-string", config_case(GEMM, set_keys(quantization_config="awq")), (CONFIG,)),
    BrokenCase("config-model-type-gpt2", config_case(GEMM, set_keys(model_type="gpt2")), (CONFIG, "gpt2")),
    BrokenCase("config-model-type-missing", config_case(GEMM, lambda c: c.pop("model_type")), (CONFIG,)),
    BrokenCase("config-hidden-size-mismatch", config_case(GEMM, set_keys(hidden_size=512)), ("model.layers.0.",)),
    BrokenCase("config-fewer-layers", config_case(GEMM, set_keys(num_hidden_layers=1)), ("model.layers.1.",)),
    BrokenCase("config-more-layers", config_case(GEMM, set_keys(num_hidden_layers=3)), ("model.layers.2.",)),
    BrokenCase("config-hidden-size-negative", config_case(GEMM, set_keys(hidden_size=-256)), (CONFIG,)),
    BrokenCase("config-vocab-size-string", config_case(GEMM, set_keys(vocab_size="512")), (CONFIG,)),
    BrokenCase("config-num-heads-zero", config_case(GEMM, set_keys(num_attention_heads=0)), (CONFIG,)),
    BrokenCase("config-hidden-act-unknown", config_case(GEMM, set_keys(hidden_act="swishy")), (CONFIG,)),
    BrokenCase("config-architectures-int", config_case(GEMM, set_keys(architectures=7)), (CONFIG,)),
    # --- AWQ quantization_config
    BrokenCase("awq-bits-3", config_case(GEMM, qc_set(bits=3)), (CONFIG, "bits")),
    BrokenCase("awq-version-marlin", config_case(GEMM, qc_set(version="marlin")), (CONFIG, "version")),
    BrokenCase("awq-backend-foo", config_case(GEMM, qc_set(backend="foo")), (CONFIG, "backend")),
    BrokenCase("awq-quant-method-gptq", config_case(GEMM, qc_set(quant_method="gptq")), (CONFIG, "quant_method")),
    BrokenCase(
        "awq-do-fuse-without-max-seq-len",
        config_case(GEMM, qc_set(do_fuse=True)),
        (CONFIG, "fuse_max_seq_len"),
    ),
    BrokenCase("awq-group-size-string", config_case(GEMM, qc_set(group_size="64")), (CONFIG, "group_size")),
    BrokenCase("awq-group-size-96", config_case(GEMM, qc_set(group_size=96)), ("model.layers.", "group_size=96")),
    BrokenCase("gemv-group-size-96", config_case(GEMV, qc_set(group_size=96)), ("model.layers.", "group_size=96")),
    BrokenCase(
        "awq-exllama-config-not-object",
        config_case(GEMM, qc_set(version="exllama", exllama_config=[2])),
        (CONFIG, "exllama_config"),
    ),
    # --- the safetensors file
    BrokenCase("safetensors-truncated-in-data", truncated_in_data, (WEIGHTS,)),
    BrokenCase("safetensors-truncated-in-header", truncated_in_header, (WEIGHTS,)),
    BrokenCase("safetensors-garbage", weights_bytes(random.Random(0).randbytes(4096)), (WEIGHTS,)),
    BrokenCase("safetensors-3-bytes", weights_bytes(b"PK\x03"), (WEIGHTS,)),
    BrokenCase("safetensors-empty-file", weights_bytes(b""), (WEIGHTS,)),
    BrokenCase("safetensors-header-not-json", header_json(b"{not json at all}"), (WEIGHTS,)),
    BrokenCase("safetensors-header-list", header_json(b"[1, 2, 3]"), (WEIGHTS,)),
    BrokenCase("safetensors-trailing-bytes", trailing_garbage, (WEIGHTS,)),
    BrokenCase("safetensors-shape-disagrees-with-offsets", header_edit(_shape_disagrees), (WEIGHTS,)),
    BrokenCase("safetensors-data-offsets-one-value", header_edit(_offsets_short), (WEIGHTS, "model.norm.weight")),
    BrokenCase("safetensors-shape-not-list", header_edit(_shape_not_list), (WEIGHTS, "model.norm.weight")),
    BrokenCase("safetensors-dtype-u32", header_edit(_dtype_u32), (f"{L0}.qweight", "int32")),
    BrokenCase("no-weight-files", no_weights, (GEMM,)),
    # --- pickle weights
    BrokenCase("pickle-only-refused", pickle_only, (PICKLE,)),
    BrokenCase("pickle-garbage", pickle_garbage, (PICKLE,), ("--allow-pickle",)),
    BrokenCase("pickle-empty-file", pickle_empty_file, (PICKLE,), ("--allow-pickle",)),
    BrokenCase("pickle-extra-int-entry", pickle_extra_entry, (PICKLE, "epoch"), ("--allow-pickle",)),
    BrokenCase("pickle-nested-state-dict", pickle_nested, (PICKLE,), ("--allow-pickle",)),
    BrokenCase("pickle-list-of-tensors", pickle_list, (PICKLE,), ("--allow-pickle",)),
    # --- model.safetensors.index.json
    BrokenCase("index-missing-shard", index_missing_shard, (INDEX, "model-00002-of-00002.safetensors")),
    BrokenCase("index-invalid-json", index_case('{"weight_map": {'), (INDEX,)),
    BrokenCase("index-without-weight-map", index_case({"metadata": {"total_size": 1}}), (INDEX,)),
    BrokenCase("index-weight-map-list", index_case({"weight_map": [WEIGHTS]}), (INDEX,)),
    # --- AutoAWQ GEMM tensors
    BrokenCase("gemm-missing-qzeros", tensor_case(GEMM, drop(f"{L1_DOWN}.qzeros")), (f"{L1_DOWN}.qzeros",)),
    BrokenCase("gemm-missing-scales", tensor_case(GEMM, drop(f"{L1_DOWN}.scales")), (f"{L1_DOWN}.scales",)),
    BrokenCase(
        "gemm-qweight-float32",
        tensor_case(GEMM, replace(f"{L0}.qweight", lambda a: a.astype(np.float32))),
        (f"{L0}.qweight",),
    ),
    BrokenCase(
        "gemm-qweight-int16",
        tensor_case(GEMM, replace(f"{L0}.qweight", lambda a: a.astype(np.int16))),
        (f"{L0}.qweight",),
    ),
    BrokenCase("gemm-qweight-1d", tensor_case(GEMM, replace(f"{L0}.qweight", np.ravel)), (f"{L0}.qweight",)),
    BrokenCase(
        "gemm-qzeros-float32",
        tensor_case(GEMM, replace(f"{L0}.qzeros", lambda a: a.astype(np.float32))),
        (f"{L0}.qzeros",),
    ),
    BrokenCase(
        "gemm-scales-wrong-groups",
        tensor_case(GEMM, replace(f"{L0}.scales", lambda a: a[:3])),
        (f"{L0}.scales",),
    ),
    BrokenCase(
        # scales says N = 128, qweight's 32 words say N = 256: the line must name one of the two tensors.
        "gemm-scales-wrong-columns",
        tensor_case(GEMM, replace(f"{L0}.scales", lambda a: a[:, :128])),
        (f"{L0}.",),
    ),
    BrokenCase("gemm-scales-1d", tensor_case(GEMM, replace(f"{L0}.scales", np.ravel)), (f"{L0}.scales",)),
    BrokenCase(
        "gemm-scales-int32",
        tensor_case(GEMM, replace(f"{L0}.scales", lambda a: a.astype(np.int32))),
        (f"{L0}.scales",),
    ),
    BrokenCase("gemm-scales-nan", tensor_case(GEMM, poison(f"{L0}.scales", np.nan, (1, 7))), (L0, "scales")),
    BrokenCase("gemm-scales-inf", tensor_case(GEMM, poison(f"{L0}.scales", np.inf, (0, 0))), (L0, "scales")),
    # --- AutoAWQ GEMV tensors
    BrokenCase(
        "gemv-qweight-float32",
        tensor_case(GEMV, replace(f"{L0}.qweight", lambda a: a.astype(np.float32))),
        (f"{L0}.qweight",),
    ),
    BrokenCase("gemv-missing-qzeros", tensor_case(GEMV, drop(f"{L1_DOWN}.qzeros")), (f"{L1_DOWN}.qzeros",)),
    BrokenCase(
        "gemv-scales-wrong-shape",
        tensor_case(GEMV, replace(f"{L0}.scales", lambda a: a[:, :8])),
        (f"{L0}.scales",),
    ),
    # --- dense tensors
    BrokenCase("norm-inf", tensor_case(GEMM, poison("model.norm.weight", np.inf, (3,))), ("model.norm.weight",)),
    BrokenCase("norm-nan", tensor_case(QWEN, poison("model.norm.weight", np.nan, (0,))), ("model.norm.weight",)),
    BrokenCase("norm-missing", tensor_case(GEMM, drop("model.norm.weight")), ("model.norm.weight",)),
    BrokenCase(
        "norm-int32",
        tensor_case(GEMM, replace("model.norm.weight", lambda a: a.astype(np.int32))),
        ("model.norm.weight",),
    ),
    BrokenCase(
        "embed-wrong-shape",
        tensor_case(GEMM, replace("model.embed_tokens.weight", lambda a: a[:-1])),
        ("model.embed_tokens.weight",),
    ),
    BrokenCase("lm-head-missing", tensor_case(GEMM, drop("lm_head.weight")), ("lm_head.weight",)),
    BrokenCase(
        "unknown-extra-tensor",
        tensor_case(GEMM, lambda t: t.update({"model.layers.0.mystery.weight": np.ones(4, np.float16)})),
        ("model.layers.0.mystery.weight",),
    ),
    BrokenCase(
        "llama-unexpected-bias",
        tensor_case(GEMM, lambda t: t.update({f"{L0}.bias": np.zeros(256, np.float16)})),
        (f"{L0}.bias",),
    ),
    # --- Qwen2 biases
    BrokenCase("qwen2-bias-missing", tensor_case(QWEN, drop(f"{L0}.bias")), (f"{L0}.bias",)),
    BrokenCase("qwen2-bias-wrong-shape", tensor_case(QWEN, replace(f"{L0}.bias", lambda a: a[:100])), (f"{L0}.bias",)),
    BrokenCase("qwen2-bias-nan", tensor_case(QWEN, poison(f"{L0}.bias", np.nan, (5,))), (f"{L0}.bias",)),
    # --- compressed-tensors
    BrokenCase("ct-actorder-group", config_case(CT, ct_weights_set(actorder="group")), (CONFIG, "actorder")),
    BrokenCase("ct-num-bits-8", config_case(CT, ct_weights_set(num_bits=8)), (CONFIG, "num_bits")),
    BrokenCase("ct-strategy-tensor", config_case(CT, ct_weights_set(strategy="tensor")), (CONFIG, "strategy")),
    BrokenCase(
        "ct-status-frozen",
        config_case(CT, qc_set(quantization_status="frozen")),
        (CONFIG, "quantization_status"),
    ),
    BrokenCase(
        "ct-group-not-object",
        config_case(CT, qc_set(config_groups={"group_0": "W4A16"})),
        (CONFIG, "config_groups"),
    ),
    BrokenCase(
        "ct-weights-not-object",
        config_case(CT, lambda c: c["quantization_config"]["config_groups"]["group_0"].update(weights=[4])),
        (CONFIG, "weights"),
    ),
    BrokenCase(
        "ct-targets-not-strings",
        config_case(CT, lambda c: c["quantization_config"]["config_groups"]["group_0"].update(targets=[7])),
        (CONFIG, "targets"),
    ),
    BrokenCase("ct-ignore-number", config_case(CT, qc_set(ignore=5)), (CONFIG, "ignore")),
    BrokenCase(
        "ct-missing-zero-point",
        tensor_case(CT, drop(f"{L1_DOWN}.weight_zero_point")),
        (f"{L1_DOWN}.weight_zero_point",),
    ),
    BrokenCase("ct-missing-weight-shape", tensor_case(CT, drop(f"{L0}.weight_shape")), (f"{L0}.weight_shape",)),
    BrokenCase(
        "ct-weight-shape-three-values",
        tensor_case(CT, replace(f"{L0}.weight_shape", lambda a: np.array([256, 256, 1], np.int64))),
        (f"{L0}.weight_shape",),
    ),
    BrokenCase(
        "ct-weight-packed-float32",
        tensor_case(CT, replace(f"{L0}.weight_packed", lambda a: a.astype(np.float32))),
        (f"{L0}.weight_packed",),
    ),
    BrokenCase(
        "ct-weight-scale-nan",
        tensor_case(CT, poison(f"{L0}.weight_scale", np.nan, (2, 1))),
        (L0, "scale"),
    ),
)
CASES_BY_ID = {case.id: case for case in CASES}
assert len(CASES_BY_ID) == len(CASES), "case ids must be unique"
