"""Write a Triton model repository from an exported folder (or a TensorRT engine folder), all-or-nothing.

The repository is one output folder, like every awq2trt output: it is built in a hidden sibling folder and
renamed into place, so a server never sees half of it (and one model that fails to load stops a server).

Layouts (``NAME`` defaults to the source folder's name):

* ``generate``: ``NAME/`` (decoupled: streams text) and ``NAME_infer/`` (one response per request, for plain
  infer and ``/generate``), both Python-backend models.  ``NAME/1/`` holds the exported folder (``model/``) and
  the few awq2trt modules serving needs (``awq2trt/``: the runtime, the sidecar reader, ``triton.serving``),
  so the repository runs where only onnxruntime, numpy and tokenizers are installed.  ``NAME_infer`` holds no
  weights: it forwards each request to ``NAME`` (Triton's BLS) and joins the streamed text, so the weights
  are loaded once and plain requests share the streaming model's batched decode steps.
* ``onnxruntime``: ``NAME/1/model.onnx`` with its data, sidecar and tokenizer, for Triton's onnxruntime backend.
* ``tensorrt``: ``NAME/1/<engine>`` with engine.json, sidecar and tokenizer, for Triton's tensorrt backend.

Large files are hard-linked where the source is on the same file system (an export is replaced by rename, never
rewritten in place, so a link keeps the bytes it was made with) and copied otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import awq2trt
from awq2trt.atomic import atomic_output_dir
from awq2trt.errors import Awq2TrtError
from awq2trt.sidecar import SIDECAR_FILE, Sidecar
from awq2trt.triton import DEVICES, KINDS
from awq2trt.triton import config as configs

INFER_SUFFIX = "_infer"
CONFIG_FILE = "config.pbtxt"
VERSION = "1"
MODEL_SUBFOLDER = "model"  # the exported folder, inside NAME/1/ of the generate kind
DEFAULT_MAX_TOKENS = 64
# Prompt + answer per request in the generate kind: each batch slot keeps KV buffers this long (SmolLM2, fp32:
# 94 MB a slot at 2048), so the default stays well below max_position_embeddings (8192 there).
DEFAULT_MAX_CONTEXT = 2048
LINK_BYTES = 1 << 20  # files this large (the weights, an engine) are hard-linked where they can be
PYTHON_MODEL = Path(__file__).with_name("python_model") / "model.py"
FORWARDER_MODEL = Path(__file__).with_name("python_model") / "forwarder.py"
# What the Python-backend model imports from awq2trt (checked by tests/test_triton.py against what it loads).
SERVING_MODULES = (
    "__init__.py",
    "errors.py",
    "json_fields.py",
    "sidecar.py",
    "untrusted_json.py",
    "ir/__init__.py",
    "ir/io_names.py",
    "runtime/__init__.py",
    "runtime/chat_template.py",
    "runtime/generate.py",
    "runtime/graph_file.py",
    "runtime/kernels.py",
    "runtime/kv_cache.py",
    "runtime/ort_step.py",
    "runtime/providers.py",
    "runtime/sampling.py",
    "runtime/session.py",
    "runtime/step.py",
    "runtime/streaming.py",
    "runtime/text_model.py",
    "triton/__init__.py",
    "triton/serving.py",
    "triton/slots.py",
)
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class RepositoryResult:
    repository: Path
    kind: str
    models: tuple[str, ...]  # the model names a server will list
    files: int  # files written or linked
    warnings: tuple[str, ...] = field(default=())


def write_repository(
    source: str | Path,
    output: str | Path,
    *,
    kind: str = "generate",
    name: str | None = None,
    max_batch: int | None = None,
    instances: int = 1,
    device: str = "cpu",
    max_tokens: int = DEFAULT_MAX_TOKENS,
    max_context: int | None = None,
    threads: int | None = None,
    kernels: str | Path | None = None,
    force: bool = False,
) -> RepositoryResult:
    """Check the inputs fully before anything is written, then build the repository in one rename."""
    source = Path(source)
    if kind not in KINDS:
        raise Awq2TrtError("--kind", expected=" or ".join(KINDS), got=kind)
    if not source.is_dir():
        raise Awq2TrtError(
            source, expected="a folder written by `awq2trt export` or `awq2trt build`", got="no such folder"
        )
    name = name or _default_name(source)
    if not _NAME.fullmatch(name):
        raise Awq2TrtError(
            "--name", expected="letters, digits, '_', '.' or '-' (not starting with '.' or '-')", got=name
        )
    if instances < 1:
        raise Awq2TrtError("--instances", expected="an integer >= 1", got=instances)
    if max_batch is not None and kind != "generate":
        raise Awq2TrtError(
            "--max-batch",
            expected="no value for the graph kinds (their configs say max_batch_size 0: the caller sets the batch"
            " dimension of every input)",
            got=max_batch,
        )
    for option, value in (("--max-context", max_context), ("--threads", threads), ("--kernels", kernels)):
        if value is not None and kind != "generate":
            raise Awq2TrtError(option, expected="no value for the graph kinds", got=value)
    if kind == "tensorrt" and device != "gpu":
        device = "gpu"  # Triton's tensorrt backend has no CPU instances; nothing else to choose
    if device not in DEVICES:
        raise Awq2TrtError("--device", expected=" or ".join(DEVICES), got=device)
    sidecar = Sidecar.read(source)
    limit = sidecar.max_position_embeddings
    if max_context is not None and limit and max_context > limit:
        raise Awq2TrtError("--max-context", expected=f"at most max_position_embeddings = {limit}", got=max_context)
    context = max_context or min(DEFAULT_MAX_CONTEXT, limit or DEFAULT_MAX_CONTEXT)
    writer = {"generate": _generate, "onnxruntime": _onnxruntime, "tensorrt": _tensorrt}[kind]
    plan = writer(
        source,
        sidecar,
        name,
        max_batch=max_batch or 1,
        instances=instances,
        device=device,
        max_tokens=max_tokens,
        max_context=context,
        threads=threads,
        kernels=kernels,
    )
    with atomic_output_dir(output, force=force) as tmp:
        files = plan.write(tmp)
    return RepositoryResult(Path(output), kind, plan.models, files, plan.warnings)


@dataclass
class _Plan:
    """What one repository holds: config texts and files to link or copy, relative to the repository."""

    models: tuple[str, ...]
    configs: dict[str, str] = field(default_factory=dict)  # relative path -> config.pbtxt text
    files: dict[str, Path] = field(default_factory=dict)  # relative path -> source file
    warnings: tuple[str, ...] = ()

    def write(self, root: Path) -> int:
        for relative, text in self.configs.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        for relative, src in self.files.items():
            dest = root / relative
            dest.parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(src, dest)
        return len(self.configs) + len(self.files)


def _exported_files(source: Path, sidecar: Sidecar) -> list[Path]:
    """The exported folder's files a runtime reads: the graph, its data, the sidecar and the tokenizer."""
    from awq2trt.checkpoint.writer import TOKENIZER_FILES

    names = [sidecar.model, *([sidecar.external_data] if sidecar.external_data else []), SIDECAR_FILE]
    for needed in names:
        if not (source / needed).is_file():
            raise Awq2TrtError(source / needed, expected=f"the file {SIDECAR_FILE} names", got="no such file")
    return [source / n for n in (*names, *TOKENIZER_FILES) if (source / n).is_file()]


def _generate(
    source: Path,
    sidecar: Sidecar,
    name: str,
    *,
    max_batch: int,
    instances: int,
    device: str,
    max_tokens: int,
    max_context: int,
    threads: int | None,
    kernels: str | Path | None,
) -> _Plan:
    if not (source / "tokenizer.json").is_file():
        raise Awq2TrtError(
            source / "tokenizer.json", expected="a tokenizer (the generate kind takes text)", got="no such file"
        )
    infer = name + INFER_SUFFIX
    plan = _Plan(models=(name, infer))
    version = f"{name}/{VERSION}"
    for path in _exported_files(source, sidecar):
        plan.files[f"{version}/{MODEL_SUBFOLDER}/{path.name}"] = path
    library = _kernel_library(source, sidecar, kernels)
    if library is not None:  # the repository carries the library it was checked with; the model points at it
        plan.files[f"{version}/{MODEL_SUBFOLDER}/{library.name}"] = library
    package = Path(awq2trt.__file__).resolve().parent
    for module in SERVING_MODULES:
        plan.files[f"{version}/awq2trt/{module}"] = package / module
    parameters = {
        # Relative to the model's own folder, so the repository can move as a whole.
        "code_folder": VERSION,
        "model_folder": f"{VERSION}/{MODEL_SUBFOLDER}",
        "provider": "cuda" if device == "gpu" else "cpu",
        "max_batch": str(max_batch),
        "max_tokens": str(max_tokens),
        "max_context": str(max_context),
        **({"threads": str(threads)} if threads else {}),
        **({"kernels": f"{VERSION}/{MODEL_SUBFOLDER}/{library.name}"} if library is not None else {}),
    }
    stream = configs.generate_config(name, decoupled=True, device=device, instances=instances, parameters=parameters)
    # The forwarder only waits on the streaming model: one instance per batch slot lets that many plain
    # requests be in flight at once (a Python-backend instance runs one execute call at a time).
    forwarder = configs.generate_config(
        infer, decoupled=False, device="cpu", instances=max(instances, max_batch), parameters={"forward_to": name}
    )
    for config, code in ((stream, PYTHON_MODEL), (forwarder, FORWARDER_MODEL)):
        plan.configs[f"{config.name}/{CONFIG_FILE}"] = configs.to_text(config)
        plan.files[f"{config.name}/{VERSION}/model.py"] = code
    if max_batch > 1 and (not sidecar.kv_cache.shared_buffer or device != "cpu"):
        plan.warnings = (
            "requests will run one at a time: batching them needs a GroupQueryAttention graph"
            " (`awq2trt export --target ort`) on the CPU",
        )
    return plan


def _kernel_library(source: Path, sidecar: Sidecar, kernels: str | Path | None) -> Path | None:
    """The checked kernel library the exported graph needs (found as the runtime would), or None."""
    from awq2trt.runtime.kernels import LIBRARY_FILE, kernels_for

    library = kernels_for(sidecar.kernels, sidecar.target, kernels, source / SIDECAR_FILE)
    if library is None:
        return None
    if (source / LIBRARY_FILE).exists():  # the copy would shadow a file of the exported folder
        raise Awq2TrtError(source / LIBRARY_FILE, expected="no such file in an exported folder", got="one")
    return library.path.resolve()


def _onnxruntime(source: Path, sidecar: Sidecar, name: str, *, instances: int, device: str, **_: object) -> _Plan:
    if sidecar.model != "model.onnx":
        raise Awq2TrtError(source / SIDECAR_FILE, expected='"model": "model.onnx"', got=sidecar.model)
    plan = _Plan(models=(name,))
    config = configs.onnxruntime_config(name, sidecar, device=device, instances=instances)
    plan.configs[f"{name}/{CONFIG_FILE}"] = configs.to_text(config)
    for path in _exported_files(source, sidecar):
        plan.files[f"{name}/{VERSION}/{path.name}"] = path
    if sidecar.kernels is not None:
        plan.warnings = (
            f"the graph needs awq2trt's kernel library ({sidecar.kernels.library}): Triton's onnxruntime backend"
            " must load it (its model config's custom-op library setting); the generate kind carries it itself",
        )
    return plan


def _tensorrt(source: Path, sidecar: Sidecar, name: str, *, instances: int, **_: object) -> _Plan:
    from awq2trt.checkpoint.writer import TOKENIZER_FILES
    from awq2trt.tensorrt.engine_info import ENGINE_INFO_FILE, EngineInfo

    info = EngineInfo.read(source)  # checks every field and the engine's size
    if info.dtype != sidecar.dtype:
        raise Awq2TrtError(source / ENGINE_INFO_FILE, expected=f"dtype {sidecar.dtype} (the sidecar's)", got=info.dtype)
    plan = _Plan(models=(name,))
    config = configs.tensorrt_config(name, sidecar, engine=info.engine, instances=instances)
    plan.configs[f"{name}/{CONFIG_FILE}"] = configs.to_text(config)
    names = (info.engine, ENGINE_INFO_FILE, SIDECAR_FILE, *TOKENIZER_FILES)
    for file_name in names:
        if (source / file_name).is_file():
            plan.files[f"{name}/{VERSION}/{file_name}"] = source / file_name
    if info.plugin_libs:
        plan.warnings = (
            f"the engine needs plugin libraries ({', '.join(info.plugin_libs)}): start tritonserver with"
            " LD_PRELOAD naming them, or the tensorrt backend cannot deserialize it",
        )
    return plan


def _default_name(source: Path) -> str:
    """The source folder's name, made a valid model name (Triton names are folder names)."""
    base = re.sub(r"[^A-Za-z0-9_.-]", "_", source.resolve().name).lstrip(".-")
    return base or "model"


def _link_or_copy(src: Path, dest: Path) -> None:
    """Weights and engines are linked; small files are copied (the repository's own permissions apply to them)."""
    if src.stat().st_size >= LINK_BYTES:
        try:
            os.link(src, dest)
            return
        except OSError:  # another file system, or links not allowed there
            pass
    shutil.copyfile(src, dest)
