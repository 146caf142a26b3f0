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
import json
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
from awq2trt.atomic import atomic_output_dir, check_output_dir
from awq2trt.checkpoint.reader import Checkpoint, open_checkpoint
from awq2trt.checkpoint.writer import TOKENIZER_FILES
from awq2trt.errors import Awq2TrtError
from awq2trt.frontend import int4_onnx
from awq2trt.frontend.kv_wrapper import KvCacheWrapper, KvLayout, dynamic_shapes, example_inputs
from awq2trt.frontend.layer_stamp import StampMismatch, stamp_layers, template_checkpoint, template_reason
from awq2trt.frontend.logits_to_keep import INPUT_NAME as LOGITS_TO_KEEP
from awq2trt.frontend.logits_to_keep import KEPT_DIM, add_logits_to_keep
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
from awq2trt.sidecar import FORMAT_VERSION, KvCacheSpec, Sidecar
from awq2trt.targets.genai_config import GENAI_CONFIG_FILE, genai_config
from awq2trt.targets.lm_head import LM_HEAD_CHOICES, quantize_lm_head
from awq2trt.targets.ort import ACCURACY_LEVELS, lower_to_ort

TARGETS = ("ir", "ort")
MODEL_FILE = "model.onnx"
DATA_FILE = "model.onnx.data"
SIDECAR_FILE = "awq2trt.json"
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


def _meta_model(ckpt: Checkpoint, dtype: torch.dtype) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    """The architecture with `AwqLinear`s, everything on ``meta``; plus the real values of computed buffers."""
    model = empty_model(ckpt, dtype)
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
    int4_onnx.register_schema()
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
                custom_translation_table={torch.ops.awq2trt.int4_matmul.default: int4_onnx.translate_int4_matmul},
                verbose=False,
            )
    except Exception as exc:  # the exporter reports any tracing failure through its own exception types
        raise Awq2TrtError(
            "export", expected="a traceable model", got=f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        ) from exc
    return program.model


def _traced_graph(
    ckpt: Checkpoint, dtype: torch.dtype, full_trace: bool, layer_types: list[str] | None
) -> tuple[Any, dict[str, torch.Tensor], KvLayout]:
    """The checkpoint's graph with initializers named but not filled, its computed buffers, its cache layout.

    Unless *full_trace*, a model whose layers are all alike is traced with a few layers and the rest are
    stamped from the last traced one (layer_stamp); a model that does not fit is traced whole.
    """
    reason = "--full-trace" if full_trace else template_reason(ckpt, layer_types)
    if reason is None:
        model, computed = _meta_model(template_checkpoint(ckpt, layer_types), dtype)
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
    model, computed = _meta_model(ckpt, dtype)
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

    with tqdm(desc="writing weights", unit="tensor", disable=not progress) as bar:

        def advance(tensor: Any, info: Any) -> None:
            bar.total = info.total
            bar.update()

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
    from onnxscript.optimizer import _constant_folding

    passes = onnx_ir.passes.Sequential(
        common.InlinePass(),
        onnx_ir.passes.PassManager(
            [
                _constant_folding.FoldConstantsPass(
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


def _attach_functions(model: Any) -> int:
    """Add the function body of each Int4MatMul signature the graph uses; returns the node count."""
    import onnx_ir as ir

    nodes = [n for n in model.graph if n.op_type == int4_onnx.OP_TYPE and n.domain == int4_onnx.DOMAIN]
    for overload in sorted({n.overload for n in nodes}):
        has_zp, has_bias = overload in ("zp", "zp_bias"), overload in ("bias", "zp_bias")
        function = ir.serde.deserialize_function(int4_onnx.make_function(has_zp, has_bias))
        model.functions[function.identifier()] = function
    model.opset_imports[int4_onnx.DOMAIN] = int4_onnx.DOMAIN_VERSION
    return len(nodes)


def _strip_trace_metadata(model: Any) -> None:
    """Drop per-node stack traces and source locations the exporter records (they triple the graph size)."""
    for node in model.graph:
        node.metadata_props.clear()


def _sidecar(
    ckpt: Checkpoint, config: dict[str, Any], layout: KvLayout, dtype: torch.dtype, int4_nodes: int
) -> dict[str, Any]:
    rope = config.get("rope_parameters") or {}
    float_name = "float32" if dtype == torch.float32 else "float16"
    eos = config.get("eos_token_id")
    kv_shape = ["batch", "num_kv_heads", "past_seq", "head_dim"]
    return {
        "format": "awq2trt-onnx",
        "format_version": 1,
        "target": "ir",
        "model": MODEL_FILE,
        "external_data": DATA_FILE,
        "dtype": float_name,
        "model_type": ckpt.model_type,
        "num_layers": layout.num_layers,
        "num_attention_heads": config["num_attention_heads"],
        "num_kv_heads": layout.num_kv_heads,
        "head_dim": layout.head_dim,
        "hidden_size": config["hidden_size"],
        "vocab_size": layout.vocab_size,
        "max_position_embeddings": config.get("max_position_embeddings"),
        "rope_theta": rope.get("rope_theta", config.get("rope_theta")),
        "sliding_window": config.get("sliding_window") if config.get("use_sliding_window", True) else None,
        "sliding_layers": [i for i, window in enumerate(attention_windows(config, layout.num_layers)) if window],
        "bos_token_id": config.get("bos_token_id"),
        "eos_token_id": eos if isinstance(eos, list) else ([eos] if eos is not None else []),
        "pad_token_id": config.get("pad_token_id"),
        "inputs": {
            "input_ids": {"dtype": "int64", "shape": ["batch", "seq"]},
            "attention_mask": {"dtype": "int64", "shape": ["batch", "total_seq"]},
            "position_ids": {"dtype": "int64", "shape": ["batch", "seq"]},
            **{name: {"dtype": float_name, "shape": kv_shape} for name in layout.past_names()},
            # Optional (an initializer too): 0 = logits for every position, k > 0 = for the last k only.
            LOGITS_TO_KEEP: {"dtype": "int64", "shape": [1], "default": 0},
        },
        "outputs": {
            "logits": {"dtype": float_name, "shape": ["batch", KEPT_DIM, "vocab"]},
            **{name: {"dtype": float_name, "shape": kv_shape} for name in layout.present_names()},
        },
        "kv_cache": {
            "past": "past_key_values.{layer}.{kind}",
            "present": "present.{layer}.{kind}",
            "shared_buffer": False,  # present = Concat(past, new): batches left-padded
            "padding": "left",
        },
        "quantization": {
            "bits": 4,
            "group_sizes": sorted({lay.group_size for lay in ckpt.linears.values()}),
            "zero_point": ckpt.zero_point,
            "source_format": ckpt.format,
            "int4_nodes": int4_nodes,
        },
    }


def _typed_sidecar(
    fields: dict[str, Any],
    *,
    target: str,
    passes: dict[str, int],
    pass_nodes: dict[str, int],
    shared_buffer: bool,
    target_options: dict[str, Any],
) -> Sidecar:
    """The typed sidecar (format 2) from ``_sidecar``'s fields, checked as a runtime will read it."""
    data = {
        **fields,
        "format_version": FORMAT_VERSION,
        "target": target,
        "passes": passes,
        "pass_nodes": pass_nodes,
        "target_options": target_options,
        "kv_cache": KvCacheSpec(shared_buffer=shared_buffer).to_json(),
    }
    return Sidecar.from_json(data, SIDECAR_FILE)


def export_checkpoint(
    checkpoint: str | Path | Checkpoint,
    output: str | Path,
    *,
    dtype: str = "fp32",
    target: str = "ir",
    force: bool = False,
    allow_pickle: bool = False,
    progress: bool = True,
    verify: bool = True,
    accuracy_level: int = 4,
    lm_head: str = "fp",
    passes: Sequence[str] | None = None,
    disable_passes: Sequence[str] = (),
    fuse_mapping: str | Path | None = None,
    full_trace: bool = False,
) -> ExportResult:
    """Trace *checkpoint* into ``OUTPUT/model.onnx`` (+ external data, tokenizer, ``awq2trt.json``).

    ``lm_head`` ``int8``/``int4`` (``ort`` target only) quantizes the dense output head as well.
    ``passes`` names the graph passes to run (None: every pass for the target, ``[]``: none); ``fuse_mapping`` is
    a JSON file saying which projections fuse, for model types without a built-in mapping.  ``full_trace``
    traces every decoder layer instead of stamping copies of a traced one (slower; same graph).
    """
    import onnx

    start = time.perf_counter()
    if target not in TARGETS:
        raise Awq2TrtError("--target", expected=" or ".join(TARGETS), got=target)
    if accuracy_level not in ACCURACY_LEVELS:
        raise Awq2TrtError("--accuracy-level", expected="0, 1, 2, 3 or 4", got=accuracy_level)
    if lm_head not in LM_HEAD_CHOICES:
        raise Awq2TrtError("--lm-head", expected=" or ".join(LM_HEAD_CHOICES), got=lm_head)
    if lm_head != "fp" and target != "ort":
        raise Awq2TrtError(
            "--lm-head", expected="fp with --target ir (a quantized head needs --target ort)", got=lm_head
        )
    torch_dtype = resolve_dtype(dtype)
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else open_checkpoint(checkpoint, allow_pickle=allow_pickle)
    check_model_type(ckpt)
    check_model_config(ckpt)
    if not ckpt.linears:
        raise Awq2TrtError(
            ckpt.folder, expected="a quantized checkpoint (AWQ or compressed-tensors)", got="dense weights"
        )
    # Unknown pass names fail before the slow trace, not after it.
    graph_passes.DEFAULT_PASSES.select(target, passes, disable_passes)
    check_output_dir(Path(output), force=force)  # fail before the slow trace, not after it
    config = attention_config(ckpt)  # which layers slide, as transformers reads config.json: trace and passes agree
    onnx_model, computed, layout = _traced_graph(ckpt, torch_dtype, full_trace, config.get("layer_types"))
    _fill_initializers(onnx_model.graph, ckpt, computed, _NUMPY_DTYPE[torch_dtype])
    _share_tied_embeddings(onnx_model.graph, ckpt)
    with atomic_output_dir(output, force=force) as tmp:
        _clean_up(onnx_model)
        if not add_logits_to_keep(onnx_model):
            raise Awq2TrtError("export", expected="logits computed by a MatMul (the output head)", got="another form")
        pass_nodes: dict[str, int] = {}
        pass_counts = graph_passes.run_passes(
            onnx_model,
            target,
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
        if target == "ort":
            int4_nodes = lower_to_ort(onnx_model, accuracy_level=accuracy_level)
            quantize_lm_head(onnx_model, lm_head, accuracy_level=accuracy_level)
        else:
            int4_nodes = _attach_functions(onnx_model)
        _strip_trace_metadata(onnx_model)
        onnx_model.producer_name = "awq2trt"
        _save(onnx_model, tmp, progress)
        if verify:
            graph_passes.register_ort_schemas()  # fused norms use ORT ops the onnx checker does not know
            onnx.checker.check_model(str(tmp / MODEL_FILE), full_check=True)
            inferred = tmp / "inferred.onnx"
            onnx.shape_inference.infer_shapes_path(str(tmp / MODEL_FILE), str(inferred), strict_mode=True)
            inferred.unlink()
        for file_name in TOKENIZER_FILES:
            if (ckpt.folder / file_name).is_file():
                shutil.copyfile(ckpt.folder / file_name, tmp / file_name)
        sidecar = _typed_sidecar(
            _sidecar(ckpt, config, layout, torch_dtype, int4_nodes),
            target=target,
            passes=pass_counts,
            pass_nodes=pass_nodes,  # graph nodes before the passes ("input") and after each one
            # past and present may be one buffer of the full context, appended in place; rows right-padded
            shared_buffer=any(node.op_type == "GroupQueryAttention" for node in onnx_model.graph),
            target_options={"accuracy_level": accuracy_level, "lm_head": lm_head} if target == "ort" else {},
        )
        sidecar.write(tmp)
        if target == "ort":  # the folder doubles as an ONNX Runtime GenAI model
            config = genai_config(sidecar.to_json(), model_file=MODEL_FILE)
            (tmp / GENAI_CONFIG_FILE).write_text(json.dumps(config, indent=4) + "\n")
        data_bytes = (tmp / DATA_FILE).stat().st_size
    seconds = time.perf_counter() - start
    return ExportResult(Path(output), int4_nodes, len(ckpt.linears), seconds, data_bytes, pass_counts)
