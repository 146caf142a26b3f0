"""`awq2trt export`: trace a checkpoint into the ONNX IR graph, streaming its weights into external data.

How memory stays bounded: the model is traced with every tensor on the ``meta`` device (shapes only, no
data), so tracing costs the same for 135M or 7B parameters.  The traced graph names each initializer after
its module path; afterwards each one is filled by decoding just that tensor from the checkpoint and
appending it to ``model.onnx.data`` (one tensor in memory at a time).  The graph then refers to the data by
offset and is never loaded whole.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from awq2trt import passes as graph_passes
from awq2trt.architectures import Architecture
from awq2trt.atomic import atomic_output_dir, check_output_dir
from awq2trt.checkpoint.reader import Checkpoint, open_checkpoint
from awq2trt.checkpoint.writer import TOKENIZER_FILES
from awq2trt.errors import Awq2TrtError
from awq2trt.frontend.int4_translation import translate_int4_matmul
from awq2trt.frontend.kv_wrapper import KvCacheWrapper, KvLayout, dynamic_shapes, example_inputs
from awq2trt.frontend.layer_stamp import StampMismatch, stamp_layers, template_checkpoint, template_reason
from awq2trt.frontend.logits_to_keep import add_logits_to_keep
from awq2trt.ir import io_names
from awq2trt.ir.int4_op import register_schema
from awq2trt.modeling.awq_linear import AwqLinear, pack_codes_pairs
from awq2trt.modeling.loader import (
    attention_config,
    check_model_config,
    check_model_type,
    checked_dense_tensor,
    empty_model,
    linear_to_replace,
    resolve_dtype,
)
from awq2trt.passes.attention import attention_windows
from awq2trt.quant_weight import SYMMETRIC_ZERO, QuantWeight
from awq2trt.sidecar import QuantizationInfo, Sidecar, TensorSpec
from awq2trt.targets.base import ExportOptions, Target
from awq2trt.targets.registry import get_target

MODEL_FILE = "model.onnx"
DATA_FILE = "model.onnx.data"
OPSET = 21
WRAPPER_PREFIX = "model."  # the KV wrapper holds the model as `.model`
FOLD_LIMIT = 4096  # elements: constant folding is for shape arithmetic, not for weights
_NUMPY_DTYPE = {torch.float32: np.float32, torch.float16: np.float16}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportResult:
    output: Path
    int4_nodes: int
    quantized_linears: int
    seconds: float
    data_bytes: int
    passes: dict[str, int]  # rewrites per graph pass, in running order


def _meta_model(
    ckpt: Checkpoint, dtype: torch.dtype, architecture: Architecture | None = None
) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    """The architecture with `AwqLinear`s, everything on ``meta``; plus the real values of computed buffers."""
    model = empty_model(ckpt, dtype, architecture)
    zero_point = ckpt.zero_point is not False
    for name, layout in ckpt.linears.items():
        target = linear_to_replace(model, ckpt, name, layout.out_features, layout.in_features)
        with torch.device("meta"):
            layer = AwqLinear(
                layout.in_features,
                layout.out_features,
                layout.group_size,
                bias=target.bias is not None,
                zero_point=zero_point,
                dtype=dtype,
            )
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, layer)
    computed = {WRAPPER_PREFIX + n: b.detach().clone() for n, b in model.named_buffers() if not b.is_meta}
    return model.to("meta"), computed


def _trace(model: torch.nn.Module, layout: KvLayout, dtype: torch.dtype) -> Any:
    register_schema()
    wrapper = KvCacheWrapper(model).eval()
    try:
        with warnings.catch_warnings():
            # Notes the exporter prints on every export: axes we named twice on purpose, torch internals.
            warnings.filterwarnings("ignore", message=r"# The axis name: .* will not be used")
            warnings.filterwarnings("ignore", category=FutureWarning, message=r".*LeafSpec.*")
            program = torch.onnx.export(
                wrapper,
                example_inputs(layout, dtype, device="meta"),
                dynamo=True,
                optimize=False,  # the optimizer would read weight values; cleanup runs after they are filled in
                opset_version=OPSET,
                dynamic_shapes=dynamic_shapes(layout),
                input_names=layout.input_names(),
                output_names=layout.output_names(),
                custom_translation_table={torch.ops.awq2trt.int4_matmul.default: translate_int4_matmul},
                verbose=False,
            )
    except Exception as exc:  # the exporter reports any tracing failure through its own exception types
        raise Awq2TrtError(
            "export", expected="a traceable model", got=f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        ) from exc
    return program.model


def _traced_graph(
    ckpt: Checkpoint,
    dtype: torch.dtype,
    full_trace: bool,
    layer_types: list[str] | None,
    architecture: Architecture | None = None,
) -> tuple[Any, dict[str, torch.Tensor], KvLayout]:
    """The checkpoint's graph with initializers named but not filled, its computed buffers, its cache layout.

    Unless *full_trace*, a model whose layers are all alike is traced with a few layers and the rest are
    stamped from the last traced one (layer_stamp); a model that does not fit is traced whole.
    """
    reason = "--full-trace" if full_trace else template_reason(ckpt, layer_types)
    if reason is None:
        model, computed = _meta_model(template_checkpoint(ckpt, layer_types), dtype, architecture)
        layout = KvLayout.of(model.config)
        onnx_model = _trace(model, layout, dtype)
        try:
            if any(".layers." in name for name in computed):
                raise StampMismatch("per-layer computed buffers")
            stamp_layers(onnx_model, int(ckpt.config["num_hidden_layers"]))
            return onnx_model, computed, dataclasses.replace(layout, num_layers=int(ckpt.config["num_hidden_layers"]))
        except StampMismatch as exc:
            reason = str(exc)
    log.info("tracing every layer: %s", reason)
    model, computed = _meta_model(ckpt, dtype, architecture)
    layout = KvLayout.of(model.config)
    return _trace(model, layout, dtype), computed, layout


def _quantized_arrays(ckpt: Checkpoint, module: str, np_dtype: type) -> dict[str, np.ndarray]:
    """The IR tensors of one quantized Linear, decoded from whatever format the checkpoint uses."""
    qw: QuantWeight = ckpt.quant_weight(module)
    arrays = {"qweight": pack_codes_pairs(qw.qweight), "scales": qw.scales.astype(np_dtype)}
    if ckpt.zero_point is not False:
        arrays["zeros"] = np.ascontiguousarray(qw.zeros)
    elif not qw.is_symmetric:
        raise Awq2TrtError(
            f"{module} zero points", expected=f"all {SYMMETRIC_ZERO} (config says zero_point false)", got="others"
        )
    bias_name = f"{module}.bias"
    if bias_name in ckpt.weights:
        arrays["bias"] = checked_dense_tensor(ckpt, bias_name, (qw.out_features,)).astype(np_dtype)
    return arrays


def _lazy(name: str, shape: tuple[int, ...], dtype: np.dtype, make: Callable[[], np.ndarray]) -> Any:
    """An initializer whose data is produced only when the model is saved (and then dropped again)."""
    import onnx_ir as ir

    def materialize() -> Any:
        array = make()
        if array.shape != shape or array.dtype != dtype:  # a pass or lowering promised something else
            raise Awq2TrtError(name, expected=f"{dtype} {list(shape)}", got=f"{array.dtype} {list(array.shape)}")
        return ir.Tensor(np.ascontiguousarray(array), name=name)

    return ir.LazyTensor(materialize, ir.DataType.from_numpy(dtype), ir.Shape(shape), name=name)


def _fill_initializers(graph: Any, ckpt: Checkpoint, computed: dict[str, torch.Tensor], np_dtype: type) -> None:
    """Give every traced initializer its data, lazily: nothing is decoded until the model is saved.

    Each quantized Linear is decoded once for its three or four tensors (a small cache holds the last few);
    passes and lowerings can wrap these lazy tensors in further transformations (reshapes, concatenations)
    that also run only at save time, one tensor at a time.
    """
    import onnx_ir as ir

    decode = functools.lru_cache(maxsize=4)(lambda module: _quantized_arrays(ckpt, module, np_dtype))
    tied = bool(ckpt.config.get("tie_word_embeddings", False))
    for value in graph.initializers.values():
        name = value.name
        module, _, leaf = name.removeprefix(WRAPPER_PREFIX).rpartition(".")
        shape = tuple(int(d) for d in value.shape)
        dtype = value.dtype.numpy()
        if module in ckpt.linears:
            value.const_value = _lazy(name, shape, dtype, lambda m=module, leaf=leaf: decode(m)[leaf])
        elif name in computed:  # buffers the architecture computes itself (rotary frequencies)
            value.const_value = ir.tensor(computed[name].numpy(), name=name)
        else:
            source = name.removeprefix(WRAPPER_PREFIX)
            if source not in ckpt.weights and tied and source == "lm_head.weight":
                source = "model.embed_tokens.weight"  # a tied head is the input embedding, stored once
            if source not in ckpt.weights:
                raise Awq2TrtError(source, expected="this tensor in the checkpoint", got="missing")
            make = lambda src=source, shp=shape: checked_dense_tensor(ckpt, src, shp).astype(np_dtype)  # noqa: E731
            value.const_value = _lazy(name, shape, dtype, make)


def _share_tied_embeddings(graph: Any, ckpt: Checkpoint) -> None:
    """The exporter lifts a tied output head as a second initializer; point its users at the embedding."""
    if not ckpt.config.get("tie_word_embeddings", False):
        return
    head = graph.initializers.get(WRAPPER_PREFIX + "lm_head.weight")
    embedding = graph.initializers.get(WRAPPER_PREFIX + "model.embed_tokens.weight")
    if head is None or embedding is None or head is embedding:
        return
    head.replace_all_uses_with(embedding)
    graph.initializers.pop(head.name)


def _save(model: Any, folder: Path, progress: bool) -> None:
    """Write model.onnx and its external data, materializing one lazy tensor at a time."""
    import onnx_ir as ir

    # The bar is made at the first tensor, when the total is known: one made earlier draws an empty
    # "writing weights: 0tensor" line before saving starts.
    bar: Any = None

    def advance(tensor: Any, info: Any) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=info.total, desc="writing weights", unit="tensor", disable=not progress)
        bar.update()

    try:
        # One worker: tensors are decoded in order (the decode cache hits) and memory stays at one tensor.
        # Page-aligned large tensors let ONNX Runtime memory-map them.
        ir.save(
            model,
            folder / MODEL_FILE,
            external_data=DATA_FILE,
            callback=advance,
            max_workers=1,
            alignment=4096,
        )
    finally:
        if bar is not None:
            bar.close()


def _clean_up(model: Any) -> None:
    """Fold shape arithmetic, drop dead nodes, share repeated subexpressions.

    onnxscript's full ``optimize_ir`` also hashes every initializer to deduplicate it (reading all weight
    data) and runs pattern rewrites meant for other exporters; both cost minutes on a large model and
    bring nothing here, so this runs only the passes that matter.  Weights are never folded: the folder
    would turn a transposed lm_head into a second, inline copy.  Functions are attached afterwards, so
    no inliner sees the Int4MatMul nodes.
    """
    import onnx_ir.passes
    import onnx_ir.passes.common as common
    from onnxscript.optimizer import constant_folding  # the public name of the folding module

    passes = onnx_ir.passes.Sequential(
        common.InlinePass(),
        onnx_ir.passes.PassManager(
            [
                constant_folding.FoldConstantsPass(
                    shape_inference=False,
                    input_size_limit=FOLD_LIMIT,
                    output_size_limit=FOLD_LIMIT,
                    should_fold=_fold_only_small,
                ),
                common.RemoveUnusedNodesPass(),
            ],
            steps=2,
            early_stop=True,
        ),
        common.RemoveUnusedFunctionsPass(),
        common.RemoveUnusedOpsetsPass(),
        common.LiftConstantsToInitializersPass(lift_all_constants=False, size_limit=FOLD_LIMIT),
        common.CommonSubexpressionEliminationPass(),
        common.NameFixPass(),
    )
    passes(model)


def _fold_only_small(node: Any) -> bool | None:
    """Veto folding of any node reading a large constant (the optimizer folds Transpose at any size)."""
    for value in node.inputs:
        tensor = value.const_value if value is not None else None
        if tensor is not None and tensor.size > FOLD_LIMIT:
            return False
    return None  # let the optimizer decide


def _strip_trace_metadata(model: Any) -> None:
    """Drop per-node stack traces and source locations the exporter records (they triple the graph size)."""
    for node in model.graph:
        node.metadata_props.clear()


def _sidecar(
    ckpt: Checkpoint,
    config: dict[str, Any],
    layout: KvLayout,
    dtype: torch.dtype,
    *,
    target: Target,
    options: ExportOptions,
    int4_nodes: int,
    passes: dict[str, int],
    pass_nodes: dict[str, int],
) -> Sidecar:
    rope = config.get("rope_parameters") or {}
    float_name = "float32" if dtype == torch.float32 else "float16"
    eos = config.get("eos_token_id")
    kv = TensorSpec(float_name, ("batch", "num_kv_heads", "past_seq", "head_dim"))
    ids = TensorSpec("int64", ("batch", "seq"))
    return Sidecar(
        target=target.name,
        model=MODEL_FILE,
        external_data=DATA_FILE,
        dtype=float_name,
        model_type=ckpt.model_type,
        num_layers=layout.num_layers,
        num_attention_heads=int(config["num_attention_heads"]),
        num_kv_heads=layout.num_kv_heads,
        head_dim=layout.head_dim,
        hidden_size=int(config["hidden_size"]),
        vocab_size=layout.vocab_size,
        max_position_embeddings=config.get("max_position_embeddings"),
        rope_theta=rope.get("rope_theta", config.get("rope_theta")),
        sliding_window=config.get("sliding_window") if config.get("use_sliding_window", True) else None,
        sliding_layers=tuple(i for i, window in enumerate(attention_windows(config, layout.num_layers)) if window),
        bos_token_id=config.get("bos_token_id"),
        eos_token_ids=tuple(eos if isinstance(eos, list) else ([eos] if eos is not None else [])),
        pad_token_id=config.get("pad_token_id"),
        inputs={
            io_names.INPUT_IDS: ids,
            io_names.ATTENTION_MASK: TensorSpec("int64", ("batch", "total_seq")),
            io_names.POSITION_IDS: ids,
            **dict.fromkeys(layout.past_names(), kv),
            # 0 = logits for every position, k > 0 = for the last k only (frontend/logits_to_keep.py).
            io_names.LOGITS_TO_KEEP: TensorSpec("int64", (1,)),
        },
        outputs={
            io_names.LOGITS: TensorSpec(float_name, ("batch", io_names.KEPT_DIM, "vocab")),
            **dict.fromkeys(layout.present_names(), kv),
        },
        kv_cache=target.kv_cache(passes),
        quantization=QuantizationInfo(
            bits=4,
            group_sizes=tuple(sorted({lay.group_size for lay in ckpt.linears.values()})),
            zero_point=ckpt.zero_point,
            source_format=ckpt.format,
            int4_nodes=int4_nodes,
        ),
        passes=passes,
        pass_nodes=pass_nodes,
        target_options=target.target_options(options),
        kernels=target.kernels(),
    )


def export_checkpoint(
    checkpoint: str | Path | Checkpoint,
    output: str | Path,
    *,
    dtype: str | None = None,
    target: str = "ir",
    force: bool = False,
    allow_pickle: bool = False,
    progress: bool = True,
    accuracy_level: int = 4,
    lm_head: str = "fp",
    weight_layout: str | None = None,
    passes: Sequence[str] | None = None,
    disable_passes: Sequence[str] = (),
    fuse_mapping: str | Path | None = None,
    full_trace: bool = False,
) -> ExportResult:
    """Trace *checkpoint* into ``OUTPUT/model.onnx`` (+ external data, tokenizer, ``awq2trt.json``).

    The driver: trace -> graph passes -> the target's lowering -> save -> the target's verification.
    *target* is a registered target name (``awq2trt.targets``); *dtype* (``fp32``/``fp16``) defaults to the
    target's (fp16 for ``trt``, fp32 otherwise); ``accuracy_level``, ``lm_head`` (``int8``/``int4`` quantizes
    the dense output head too) and ``weight_layout`` (``ort-kernels``: ``rows`` or ``tiles16``, the layout of the
    Int4MatMul weights, `awq2trt.cpu_layout`; None: tiles16 at level 4, rows at 0) are options of the targets
    that read them.
    ``passes`` names the graph passes to run (None: every pass of the target, ``[]``: none); ``fuse_mapping``
    is a JSON file saying which projections fuse, for model types without a built-in mapping.  ``full_trace``
    traces every decoder layer instead of stamping copies of a traced one (slower; same graph).
    """
    start = time.perf_counter()
    backend = get_target(target)
    options = ExportOptions(accuracy_level=accuracy_level, lm_head=lm_head, weight_layout=weight_layout)
    backend.check_options(options)
    torch_dtype = resolve_dtype(dtype or backend.default_dtype)
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else open_checkpoint(checkpoint, allow_pickle=allow_pickle)
    # A model type without a built-in description is described by the --fuse-mapping file, for loading too.
    architecture = check_model_type(ckpt, fuse_mapping)
    check_model_config(ckpt)
    if not ckpt.linears:
        raise Awq2TrtError(
            ckpt.folder, expected="a quantized checkpoint (AWQ or compressed-tensors)", got="dense weights"
        )
    # Unknown pass names and an existing output fail before the slow trace, not after it.
    graph_passes.DEFAULT_PASSES.select(backend.name, passes, disable_passes)
    check_output_dir(Path(output), force=force)
    # Which layers slide, as transformers reads config.json: trace and passes agree.
    config = attention_config(ckpt, architecture)
    onnx_model, computed, layout = _traced_graph(ckpt, torch_dtype, full_trace, config.get("layer_types"), architecture)
    _fill_initializers(onnx_model.graph, ckpt, computed, _NUMPY_DTYPE[torch_dtype])
    _share_tied_embeddings(onnx_model.graph, ckpt)
    with atomic_output_dir(output, force=force) as tmp:
        _clean_up(onnx_model)
        if not add_logits_to_keep(onnx_model):
            raise Awq2TrtError("export", expected="logits computed by a MatMul (the output head)", got="another form")
        pass_nodes: dict[str, int] = {}
        pass_counts = graph_passes.run_passes(
            onnx_model,
            backend.name,
            passes,
            disable_passes,
            config=config,
            mapping_file=fuse_mapping,
            node_counts=pass_nodes,
        )
        linears = graph_passes.linears_computed(onnx_model)  # a fused node computes several Linears
        if linears != len(ckpt.linears):
            raise Awq2TrtError(
                "export", expected=f"{len(ckpt.linears)} quantized Linears computed by the graph", got=linears
            )
        int4_nodes = backend.lower(onnx_model, options)
        _strip_trace_metadata(onnx_model)
        onnx_model.producer_name = "awq2trt"
        _save(onnx_model, tmp, progress)
        backend.verify(tmp / MODEL_FILE)
        for file_name in TOKENIZER_FILES:
            if (ckpt.folder / file_name).is_file():
                shutil.copyfile(ckpt.folder / file_name, tmp / file_name)
        sidecar = _sidecar(
            ckpt,
            config,
            layout,
            torch_dtype,
            target=backend,
            options=options,
            int4_nodes=int4_nodes,
            passes=pass_counts,
            pass_nodes=pass_nodes,  # graph nodes before the passes ("input") and after each one
        )
        sidecar.write(tmp)
        backend.write_extra_files(tmp, sidecar)
        data_bytes = (tmp / DATA_FILE).stat().st_size
    seconds = time.perf_counter() - start
    return ExportResult(Path(output), int4_nodes, len(ckpt.linears), seconds, data_bytes, pass_counts)
