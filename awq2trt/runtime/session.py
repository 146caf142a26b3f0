"""An ONNX Runtime session over the graph ``awq2trt export`` writes: validation, generation, perplexity logits.

Only onnxruntime, numpy and ``tokenizers`` are needed (jinja2 too, for chat templates, imported on first use);
nothing here imports torch, transformers or the awq2trt compiler.  The loop itself (sampling, stopping,
streaming, timing) is ``generate``, shared by every backend; this session is driven through ``ort_step``.

How the KV cache is kept depends on the graph (``kv_cache``): ``present`` built by Concat is fed back as
numpy arrays; a GroupQueryAttention graph (sidecar ``kv_cache.shared_buffer``) gets one preallocated buffer per
tensor bound as both past and present.  The measurements behind both choices are in ``kv_cache``.  For the
Concat form, measured on the exported llama-gemm-g64 fixture (CPU provider, 4 threads, greedy decode, best
of 5), IO binding did not beat plain ``run``:

======================  ===============  ================================  =======================================
batch / prompt / steps  numpy ``run``    IO binding, OrtValue passthrough  IO binding into preallocated ping-pong
                                         (``bind_ortvalue_input``)         buffers of capacity max_length
======================  ===============  ================================  =======================================
1 / 16 / 64             956 steps/s      935 steps/s                       835 steps/s
4 / 128 / 256           219 steps/s      166 steps/s                       187 steps/s
8 / 256 / 256            57 steps/s       53 steps/s                        49 steps/s
======================  ===============  ================================  =======================================
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from awq2trt.errors import Awq2TrtError
from awq2trt.ir import io_names
from awq2trt.runtime.generate import Generation, Timing
from awq2trt.runtime.graph_file import check_graph_file
from awq2trt.runtime.kernels import KernelLibrary, check_providers, kernels_for, register
from awq2trt.runtime.ort_step import NUMPY_DTYPES, OrtStepModel
from awq2trt.runtime.text_model import TextModel, load_tokenizer
from awq2trt.sidecar import SIDECAR_FILE, Sidecar, name_difference

__all__ = ["Generation", "OrtModel", "Timing"]

_ORT_TYPES = {
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
}


class OrtModel(TextModel):
    """An exported folder opened for inference in ONNX Runtime; build it with :meth:`open`."""

    backend = "onnxruntime"

    def __init__(
        self,
        folder: Path,
        sidecar: Sidecar,
        session: ort.InferenceSession,
        tokenizer: Any | None,
        kernels: KernelLibrary | None = None,
    ) -> None:
        self.session = session
        self.kernels = kernels  # the custom-op library registered with the session, if any
        self.device = "cuda" if session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        self.steps: OrtStepModel = OrtStepModel(session, sidecar, self.device)
        super().__init__(folder, sidecar, self.steps, tokenizer)
        self.dtype = NUMPY_DTYPES[sidecar.dtype]
        # GroupQueryAttention graphs append to a buffer bound as both past and present (see kv_cache).
        self.shared_kv = sidecar.kv_cache.shared_buffer
        # The names in graph order, for code that drives a kv_cache class directly (tests/test_export.py).
        self._past = self.steps.past
        self._outputs = [io_names.LOGITS, *self.steps.present]

    # -- opening ------------------------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        folder: str | Path,
        *,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        kernels: str | Path | None = None,
    ) -> OrtModel:
        """Read and check ``awq2trt.json``, load ``model.onnx`` and check its IO against the sidecar.

        *kernels*: the path of ``libawq2trt_ort`` (plugins/onnxruntime) when the sidecar says the graph needs it
        (``--target ort-kernels``), instead of ``$AWQ2TRT_ORT_KERNELS`` or the package's copy; for an ``ir``
        graph, a library to run its Int4MatMul nodes (``awq2trt.runtime.kernels``).
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise Awq2TrtError(folder, expected="a folder written by `awq2trt export`", got="no such folder")
        sidecar = Sidecar.read(folder)
        model_path = folder / sidecar.model
        if not model_path.is_file():
            raise Awq2TrtError(model_path, expected=f"the model file named in {SIDECAR_FILE}", got="no such file")
        data_name = sidecar.external_data
        if data_name and not (folder / data_name).is_file():
            raise Awq2TrtError(
                folder / data_name, expected=f"the external weight file {model_path.name} refers to", got="no such file"
            )
        # ONNX Runtime opens the external data itself and trusts the graph's offsets: checked here first.
        check_graph_file(folder, sidecar)
        # Found and checked before any session exists: a missing or foreign library is one error line.
        library = kernels_for(sidecar.kernels, sidecar.target, kernels, folder / SIDECAR_FILE)
        options = ort.SessionOptions()
        if library is not None:
            layout = sidecar.target_options.get("weight_layout", "rows")  # exports before the option: rows
            epilogues = int(sidecar.passes.get("fuse_silu_mul", 0))
            check_providers(library, providers or [], sidecar.dtype, folder / SIDECAR_FILE, str(layout), epilogues)
            register(options, library)
        options.log_severity_level = 3  # fp16 graphs make ORT list every node it cannot constant-fold
        # A trt graph's INT4 DequantizeLinear + MatMul, which ORT fuses into MatMulNBits, runs exactly (as
        # TensorRT's weight-only GEMM computes it), not with int8 activations; other graphs have no such pair.
        options.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "0")
        if threads is not None:
            if threads < 1:
                raise Awq2TrtError("threads", expected="an integer >= 1", got=threads)
            options.intra_op_num_threads = threads
        try:
            session = ort.InferenceSession(
                str(model_path), options, providers=list(providers or ["CPUExecutionProvider"])
            )
        except Exception as error:  # ORT raises its own types with multi-line messages; report one line
            detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise Awq2TrtError(model_path, detail=f"ONNX Runtime could not load it: {detail[:300]}") from None
        _check_io(sidecar, session, folder / SIDECAR_FILE)
        return cls(folder, sidecar, session, load_tokenizer(folder), library)

    def model_files(self) -> list[Path]:
        files = [self.folder / self.sidecar.model]
        if self.sidecar.external_data:
            files.append(self.folder / self.sidecar.external_data)
        return files

    # -- forward ------------------------------------------------------------------------------------------------

    def logits(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Logits [batch, T, vocab] of ids [T] or [batch, T], run from an empty cache (for perplexity windows)."""
        ids = self.window_ids(ids)
        positions = np.broadcast_to(np.arange(ids.shape[1], dtype=np.int64), ids.shape)
        empty = self.steps.empty_past(ids.shape[0])
        feeds = {
            io_names.INPUT_IDS: ids,
            io_names.ATTENTION_MASK: np.ones_like(ids),
            io_names.POSITION_IDS: np.ascontiguousarray(positions),
            **{name: empty for name in self._past},
        }
        if self.sidecar.keeps_logits:
            feeds[io_names.LOGITS_TO_KEEP] = np.zeros(1, np.int64)  # every position's logits
        return self.session.run([io_names.LOGITS], feeds)[0]


def _check_io(sidecar: Sidecar, session: ort.InferenceSession, path: Path) -> None:
    """The graph's inputs and outputs must be the sidecar's, by name and element type.

    ``Sidecar.read`` has already checked the names against the layer count; this checks them against the graph.
    """
    actual = {
        "inputs": session.get_inputs(),
        "outputs": session.get_outputs(),
    }
    for side, declared in (("inputs", sidecar.inputs), ("outputs", sidecar.outputs)):
        graph = {arg.name: arg for arg in actual[side]}
        if set(graph) != set(declared):
            raise Awq2TrtError(
                path, expected=f"the {side} of {sidecar.model}", got=name_difference(set(declared), set(graph))
            )
        for name, spec in declared.items():
            got = _ORT_TYPES.get(graph[name].type, graph[name].type)
            if spec.dtype != got:
                raise Awq2TrtError(path, expected=f"{name} of {sidecar.model} as {spec.dtype}", got=got)
