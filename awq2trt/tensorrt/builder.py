"""``awq2trt build``: an exported ``trt`` folder -> a serialized TensorRT engine + ``engine.json``.

The steps, all on TensorRT's own Python API (10.x and 11.x): load the plugin libraries into the plugin
registry, parse ``model.onnx`` *from its path* (so TensorRT finds the external weights beside it) into a
strongly typed network (the graph's dtypes decide every precision: no FP16 flag), add the prefill and decode
optimization profiles (``profiles.py``), attach the timing cache and a progress monitor, build, then write the
engine, the timing cache and ``engine.json`` (last) each through a temporary file and a rename.

Everything that can be checked without TensorRT (the sidecar, the limits, the output paths) is checked before
``tensorrt`` is imported, so a bad command line fails at once; ``tensorrt`` is imported only here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from awq2trt.atomic import write_file_atomic
from awq2trt.checkpoint.writer import TOKENIZER_FILES
from awq2trt.errors import Awq2TrtError, MissingPackageError
from awq2trt.output_lock import output_lock
from awq2trt.runtime.graph_file import check_graph_file
from awq2trt.sidecar import SIDECAR_FILE, Sidecar
from awq2trt.tensorrt.cancel import cancel_on_signals
from awq2trt.tensorrt.engine_info import ENGINE_INFO_FILE, FORMAT_VERSION, EngineInfo, Profile
from awq2trt.tensorrt.parser_errors import OnnxParseError, parser_error_line
from awq2trt.tensorrt.profiles import engine_limits, optimization_profiles
from awq2trt.tensorrt.progress import ProgressBars, tensorrt_monitor
from awq2trt.tensorrt.trt_logger import ErrorLog, tensorrt_logger

if TYPE_CHECKING:
    import tensorrt

ENGINE_FILE = "model.plan"  # the default engine name, inside MODEL_DIR
# The export whose AwqGemm nodes need our plugin (awq2trt/targets/trt_plugin.py, not imported: it pulls numpy),
# and the library plugins/tensorrt builds.
TRT_PLUGIN_TARGET = "trt-plugin"
PLUGIN_LIBRARY = "libawq2trt_trt.so"
SUPPORTED_MAJORS = (10, 11)
INSTALL_HINT = 'install it with pip install "awq2trt[trt]" (tensorrt>=10,<12; it needs an NVIDIA GPU and driver)'


@dataclass(frozen=True)
class BuildResult:
    engine: Path
    info: EngineInfo
    info_path: Path
    seconds: float
    copied: tuple[str, ...] = ()  # sidecar and tokenizer files copied beside the engine
    timing_cache: Path | None = None
    warnings: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class _Plan:
    """Everything decided before TensorRT is imported."""

    model_dir: Path
    sidecar: Sidecar
    onnx_path: Path
    engine: Path
    profiles: tuple[Profile, ...]
    max_batch: int
    max_seq: int
    max_context: int
    plugin_libs: tuple[Path, ...]
    copies: tuple[str, ...]


def import_tensorrt(purpose: str = "`awq2trt build`") -> None:
    """Import ``tensorrt`` and check it is a real 10.x or 11.x install; ``MissingPackageError`` otherwise.

    *purpose* names what needs it in the error (the build, or running an engine).
    """
    try:
        import tensorrt as trt
    except ImportError as error:
        raise MissingPackageError(
            "tensorrt",
            expected=f"TensorRT 10 or 11 for {purpose}",
            got=f"not installed ({error})",
            detail=INSTALL_HINT,
        ) from None
    # Its type stubs alone (tensorrt-stubs) make `tensorrt` importable as an empty namespace package.
    version = getattr(trt, "__version__", None)
    if not isinstance(version, str) or not hasattr(trt, "Builder"):
        raise MissingPackageError(
            "tensorrt",
            expected=f"TensorRT 10 or 11 for {purpose}",
            got="only its type stubs (tensorrt-stubs), not the library",
            detail=INSTALL_HINT,
        )
    major = version.split(".", 1)[0]
    if not major.isdigit() or int(major) not in SUPPORTED_MAJORS:
        raise MissingPackageError(
            "tensorrt", expected=f"TensorRT 10.x or 11.x for {purpose}", got=version, detail=INSTALL_HINT
        )


def build_engine(
    model_dir: str | Path,
    output: str | Path | None = None,
    *,
    max_batch: int | None = None,
    max_seq: int | None = None,
    max_context: int | None = None,
    workspace: int | None = None,
    timing_cache: str | Path | None = None,
    plugin_libs: Sequence[str | Path] = (),
    force: bool = False,
    progress: bool = True,
    verbose: bool = False,
) -> BuildResult:
    """Build ``OUTPUT`` (default ``MODEL_DIR/model.plan``) and ``engine.json`` beside it from an exported folder.

    *workspace* caps TensorRT's scratch memory (bytes; None: TensorRT's default, the GPU's memory);
    *timing_cache* is read when it exists and written back after the build.  If the engine's folder is not
    *model_dir*, the sidecar and tokenizer files are copied beside it so that folder is all a runtime needs.
    """
    start = time.perf_counter()
    plan = _plan(model_dir, output, max_batch, max_seq, max_context, plugin_libs, force)
    cache_path = _check_timing_cache(timing_cache)
    if workspace is not None and (isinstance(workspace, bool) or workspace < 1):
        raise Awq2TrtError("--workspace", expected="a size of at least 1 byte", got=workspace)
    import_tensorrt()
    # Held from here to the end (a build takes minutes): a second build into the same engine fails at once.
    # The lock lives in the engine's folder; made only now, and removed again by a failed build, so a build that
    # finds no TensorRT or fails leaves no trace.
    made = [p for p in (plan.engine.parent, *plan.engine.parent.parents) if not p.exists()]
    _make_parent(plan.engine.parent)
    try:
        return _build_locked(plan, cache_path, workspace, force=force, progress=progress, verbose=verbose, start=start)
    except BaseException:
        for folder in made:  # deepest first; one that is not empty (something else wrote there) stays
            try:
                folder.rmdir()
            except OSError:
                break
        raise


def _build_locked(
    plan: _Plan,
    cache_path: Path | None,
    workspace: int | None,
    *,
    force: bool,
    progress: bool,
    verbose: bool,
    start: float,
) -> BuildResult:
    with output_lock(plan.engine):
        if not force:  # checked again under the lock: a run that just finished may have written it
            _refuse_existing(plan)
        import tensorrt as trt

        log = ErrorLog(verbose=verbose)
        logger = tensorrt_logger(log)
        _load_plugins(plan.plugin_libs)
        builder = trt.Builder(logger)
        # Strongly typed: every tensor keeps the type the graph gives it (fp16 graph -> fp16 engine, INT4 weights
        # stay INT4); TensorRT 11 is always strongly typed and still accepts the flag.
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(plan.onnx_path)):
            lines = [parser_error_line(plan.onnx_path, parser.get_error(i)) for i in range(parser.num_errors)]
            raise OnnxParseError(plan.onnx_path, lines)
        config = builder.create_builder_config()
        if workspace is not None:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
        for index, profile in enumerate(plan.profiles):
            _add_profile(builder, network, config, profile, index, plan.onnx_path)
        warnings: list[str] = []
        cache = _attach_timing_cache(config, cache_path, warnings)
        bars = ProgressBars(enabled=progress)
        monitor = tensorrt_monitor(bars)  # kept referenced until the build returns (TensorRT holds a raw pointer)
        config.progress_monitor = monitor
        try:
            with cancel_on_signals(bars.cancel):
                serialized = builder.build_serialized_network(network, config)
        finally:
            bars.close()
        if bars.cancelled and bars.error is None:
            raise KeyboardInterrupt
        if bars.error is not None:
            raise bars.error
        if serialized is None or serialized.nbytes == 0:
            reason = log.last_error or "no engine and no error message (rerun with --verbose for TensorRT's log)"
            raise Awq2TrtError(plan.onnx_path, expected="a network TensorRT can build into an engine", got=reason)
        info = EngineInfo(
            format_version=FORMAT_VERSION,
            tensorrt_version=trt.__version__,
            engine=plan.engine.name,
            dtype=plan.sidecar.dtype,
            max_batch=plan.max_batch,
            max_seq=plan.max_seq,
            max_context=plan.max_context,
            profiles=plan.profiles,
            plugin_libs=tuple(str(p) for p in plan.plugin_libs),
            engine_bytes=serialized.nbytes,
        )
        info_path = plan.engine.parent / ENGINE_INFO_FILE
        if cache_path is not None:
            _make_parent(cache_path.parent)
        with _Outputs() as outputs:
            # An older engine.json would describe the engine about to be replaced: gone first (before the copied
            # sidecar changes too), written again last, so at no moment does the folder claim an engine it does
            # not hold, even if the build is killed in between.
            info_path.unlink(missing_ok=True)
            for name in plan.copies:
                outputs.write(plan.engine.parent / name, (plan.model_dir / name).read_bytes())
            outputs.write(plan.engine, memoryview(serialized))
            if cache is not None and cache_path is not None:
                outputs.write(cache_path, memoryview(cache.serialize()))
            outputs.write(info_path, info.to_text().encode())
        EngineInfo.read(plan.engine.parent)  # the size check a runtime does, once, where the build can say so
        return BuildResult(
            engine=plan.engine,
            info=info,
            info_path=info_path,
            seconds=time.perf_counter() - start,
            copied=plan.copies,
            timing_cache=cache_path,
            warnings=tuple(warnings),
        )


# -- before TensorRT --------------------------------------------------------------------------------------------


def _plan(
    model_dir: str | Path,
    output: str | Path | None,
    max_batch: int | None,
    max_seq: int | None,
    max_context: int | None,
    plugin_libs: Sequence[str | Path],
    force: bool,
) -> _Plan:
    folder = Path(model_dir)
    if not folder.is_dir():
        raise Awq2TrtError(folder, expected="an exported folder (`awq2trt export --target trt`)", got="no such folder")
    sidecar = Sidecar.read(folder)
    where = folder / SIDECAR_FILE
    limits = engine_limits(sidecar, max_batch, max_seq, max_context, where=where)
    profiles = optimization_profiles(sidecar, limits.max_batch, limits.max_seq, limits.max_context)
    onnx_path = folder / sidecar.model
    for name in (sidecar.model, sidecar.external_data):
        if name is not None and not (folder / name).is_file():
            raise Awq2TrtError(folder / name, expected=f"the graph file {where} names", got="no such file")
    # TensorRT's parser opens the external data itself and trusts the graph's offsets: checked here first.
    check_graph_file(folder, sidecar)
    engine = Path(output) if output is not None else folder / ENGINE_FILE
    if engine.is_dir():
        raise Awq2TrtError(engine, expected="a path for the engine file (e.g. OUT/model.plan)", got="a folder")
    if engine.name in (ENGINE_INFO_FILE, SIDECAR_FILE, sidecar.model, sidecar.external_data):
        raise Awq2TrtError(engine, expected=f"an engine file name other than {engine.name}", got=engine.name)
    _check_parent(engine.parent)
    same_folder = engine.parent.resolve() == folder.resolve()
    copies = () if same_folder else tuple(n for n in (SIDECAR_FILE, *TOKENIZER_FILES) if (folder / n).is_file())
    libs = []
    for lib in plugin_libs:
        path = Path(lib).expanduser().resolve()
        if not path.is_file():
            raise Awq2TrtError(f"--plugin-lib {lib}", expected="a plugin library file", got="no such file")
        libs.append(path)
    if sidecar.target == TRT_PLUGIN_TARGET and not libs:
        # The parser would otherwise fail deep in the build on the first AwqGemm node it has no creator for.
        raise Awq2TrtError(
            "--plugin-lib",
            expected=f"the AwqGemm plugin library ({PLUGIN_LIBRARY}, built from plugins/tensorrt) for a"
            " --target trt-plugin export",
            got="none given",
        )
    plan = _Plan(
        model_dir=folder,
        sidecar=sidecar,
        onnx_path=onnx_path,
        engine=engine,
        profiles=profiles,
        max_batch=limits.max_batch,
        max_seq=limits.max_seq,
        max_context=limits.max_context,
        plugin_libs=tuple(libs),
        copies=copies,
    )
    if not force:
        _refuse_existing(plan)
    return plan


def _refuse_existing(plan: _Plan) -> None:
    folder = plan.engine.parent
    for path in (plan.engine, folder / ENGINE_INFO_FILE, *(folder / n for n in plan.copies)):
        if path.exists():
            raise Awq2TrtError(path, expected="a new output", got="an existing file (pass --force to replace it)")


def _check_parent(parent: Path) -> None:
    """The folder can be made later: its nearest existing ancestor is a folder (nothing is created yet, so a
    build that fails, or finds no TensorRT, leaves no trace)."""
    ancestor = parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise Awq2TrtError(ancestor, expected="a folder to hold the output", got="a file")


def _make_parent(parent: Path) -> None:
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise Awq2TrtError(parent, expected="a creatable folder", got=error.strerror) from None


def _check_timing_cache(path: str | Path | None) -> Path | None:
    if path is None:
        return None
    cache = Path(path)
    if cache.exists() and not cache.is_file():
        raise Awq2TrtError(
            f"--timing-cache {cache}", expected="a file (read if present, written after the build)", got="a folder"
        )
    _check_parent(cache.parent)
    return cache


# -- TensorRT ---------------------------------------------------------------------------------------------------


def _load_plugins(libs: Sequence[Path]) -> None:
    """Register each library's plugin creators where the ONNX parser looks them up (the global registry)."""
    if not libs:
        return
    import tensorrt

    registry: tensorrt.IPluginRegistry = tensorrt.get_plugin_registry()
    for lib in libs:
        try:
            handle = registry.load_library(str(lib))
        except (RuntimeError, TypeError) as error:
            raise Awq2TrtError(f"--plugin-lib {lib}", expected="a TensorRT plugin library", got=str(error)) from None
        if handle is None:
            raise Awq2TrtError(
                f"--plugin-lib {lib}",
                expected="a TensorRT plugin library whose plugins are not registered yet",
                got="TensorRT refused to load it (rerun with --verbose for its log)",
            )


def _add_profile(
    builder: tensorrt.Builder,
    network: tensorrt.INetworkDefinition,
    config: tensorrt.IBuilderConfig,
    profile: Profile,
    index: int,
    onnx_path: Path,
) -> None:
    """Give every network input its range in this profile: dims for each one, values for shape tensors."""
    import tensorrt

    trt_profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        name = tensor.name
        where = f"{onnx_path}: input {name}, profile {profile.name}"
        shape = profile.shapes.get(name)
        dims = [tensor.shape[j] for j in range(len(tensor.shape))]
        if shape is None and any(d < 0 for d in dims):
            raise Awq2TrtError(where, expected="an input the sidecar declares", got=f"dims {dims}")
        try:
            if shape is not None:
                trt_profile.set_shape(
                    name, tensorrt.Dims(list(shape.min)), tensorrt.Dims(list(shape.opt)), tensorrt.Dims(list(shape.max))
                )
            if tensor.is_shape_tensor:
                values = profile.values.get(name)
                if values is None:
                    raise Awq2TrtError(
                        where, expected="a value range (TensorRT treats it as a shape tensor)", got="none"
                    )
                trt_profile.set_shape_input(name, list(values.min), list(values.opt), list(values.max))
        except (ValueError, RuntimeError, TypeError) as error:
            raise Awq2TrtError(where, expected="a range TensorRT accepts", got=str(error)) from None
    if not trt_profile:
        raise Awq2TrtError(
            f"{onnx_path}: profile {profile.name}", expected="a valid profile", got="TensorRT refused it"
        )
    added = config.add_optimization_profile(trt_profile)
    if added != index:
        raise Awq2TrtError(
            f"{onnx_path}: profile {profile.name}", expected=f"optimization profile index {index}", got=added
        )


def _attach_timing_cache(
    config: tensorrt.IBuilderConfig, path: Path | None, warnings: list[str]
) -> tensorrt.ITimingCache | None:
    """Start from the saved timing cache when there is one TensorRT accepts, from an empty one otherwise."""
    if path is None:
        return None
    try:
        data = path.read_bytes() if path.is_file() else b""
    except OSError as error:
        raise Awq2TrtError(f"--timing-cache {path}", expected="a readable file", got=error.strerror) from None
    try:
        cache: tensorrt.ITimingCache | None = config.create_timing_cache(data)
    except (RuntimeError, TypeError):
        cache = None  # not a timing cache at all
    if cache is not None and config.set_timing_cache(cache, False):
        return cache
    # Another GPU or TensorRT wrote it: build without it, and replace it with this machine's afterwards.
    warnings.append(f"{path}: not a timing cache of this GPU and TensorRT version; starting a new one")
    cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, False)
    return cache


class _Outputs:
    """Write files all-or-nothing as a group: each through a rename; on failure the new ones are removed."""

    def __init__(self) -> None:
        self.created: list[Path] = []

    def __enter__(self) -> _Outputs:
        return self

    def write(self, path: Path, data: bytes | memoryview) -> None:
        existed = path.exists()
        write_file_atomic(path, data)
        if not existed:
            self.created.append(path)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: object) -> None:
        if error is not None:
            for path in self.created:
                path.unlink(missing_ok=True)
