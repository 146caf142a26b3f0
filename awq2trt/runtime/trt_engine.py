"""A TensorRT engine as an ``EngineRunner`` (``trt_step``): one execution context per optimization profile.

Each context selects its profile once, at creation, so a step never switches profiles (switching costs a
synchronisation).  Every run sets each input's shape and address, asks the context for the output shapes those
imply, allocates the outputs as torch tensors and enqueues on torch's current stream.  TensorRT wants a non-null
address for every tensor, also an empty one (the prefill's 0-long past), and host memory for inputs it reads as
shape values (``get_tensor_location`` says which): both are handled here, not by callers.  An output whose shape
the input shapes do not determine (the logits, were ``num_logits_to_keep`` not a shape tensor to TensorRT) gets an
``IOutputAllocator`` that allocates it once TensorRT knows its size; that run then synchronises the stream.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from awq2trt.errors import Awq2TrtError
from awq2trt.tensorrt.engine_info import EngineInfo
from awq2trt.tensorrt.trt_logger import ErrorLog, tensorrt_logger

if TYPE_CHECKING:
    import tensorrt


def _torch_dtypes() -> dict[tensorrt.DataType, torch.dtype]:
    import tensorrt as trt

    return {
        trt.DataType.FLOAT: torch.float32,
        trt.DataType.HALF: torch.float16,
        trt.DataType.BF16: torch.bfloat16,
        trt.DataType.INT64: torch.int64,
        trt.DataType.INT32: torch.int32,
        trt.DataType.INT8: torch.int8,
        trt.DataType.UINT8: torch.uint8,
        trt.DataType.BOOL: torch.bool,
    }


class _LateOutput:
    """What an output allocator learns during a run: its buffer and the output's shape."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.buffer: torch.Tensor | None = None
        self.shape: tuple[int, ...] | None = None

    def allocate(self, size: int) -> int:
        if self.buffer is None or self.buffer.numel() < size:
            self.buffer = torch.empty(max(size, 256), dtype=torch.uint8, device=self.device)
        return self.buffer.data_ptr()

    def tensor(self, dtype: torch.dtype) -> torch.Tensor:
        assert self.buffer is not None and self.shape is not None, "TensorRT reported no output"
        return self.buffer.view(dtype)[: math.prod(self.shape)].view(self.shape)


def _output_allocator(late: _LateOutput) -> tensorrt.IOutputAllocator:
    """An ``IOutputAllocator`` feeding *late*; made once TensorRT is imported (its base class comes from there)."""
    import tensorrt as trt

    class Allocator(trt.IOutputAllocator):
        def __init__(self) -> None:
            trt.IOutputAllocator.__init__(self)  # pybind11 trampolines need the base initialised explicitly

        def reallocate_output_async(self, tensor_name: str, memory: int, size: int, alignment: int, stream: int) -> int:
            return late.allocate(size)

        def notify_shape(self, tensor_name: str, shape: tensorrt.Dims) -> None:
            late.shape = tuple(shape[i] for i in range(len(shape)))

    return Allocator()


class TrtEngineRunner:
    """Deserialize *engine_path* (after loading the plugin libraries engine.json names) on CUDA device *device*."""

    def __init__(self, engine_path: Path, info: EngineInfo, *, device: int = 0, verbose: bool = False) -> None:
        import tensorrt as trt

        self.path = engine_path
        self.device = torch.device("cuda", device)
        self.log = ErrorLog(verbose=verbose)
        self.logger = tensorrt_logger(self.log)  # kept: TensorRT holds a reference to it, not ownership
        torch.cuda.set_device(self.device)
        self.runtime = trt.Runtime(self.logger)
        registry = self.runtime.get_plugin_registry()
        for library in info.plugin_libs:
            if not Path(library).is_file():
                raise Awq2TrtError(library, expected="the plugin library the engine was built with", got="no such file")
            registry.load_library(library)
        engine = self.runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if engine is None:
            raise Awq2TrtError(engine_path, detail=f"TensorRT could not deserialize it: {self.log.last_error}")
        self.engine = engine
        if engine.num_optimization_profiles != len(info.profiles):
            raise Awq2TrtError(
                engine_path,
                expected=f"{len(info.profiles)} optimization profiles (engine.json)",
                got=engine.num_optimization_profiles,
            )
        dtypes = _torch_dtypes()
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.dtypes: dict[str, torch.dtype] = {}
        self.on_host: set[str] = set()
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            kind = engine.get_tensor_dtype(name)
            if kind not in dtypes:
                raise Awq2TrtError(engine_path, expected="IO tensors of a dtype torch has", got=f"{name}: {kind}")
            self.dtypes[name] = dtypes[kind]
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self.inputs if is_input else self.outputs).append(name)
            if engine.get_tensor_location(name) == trt.TensorLocation.HOST:
                self.on_host.add(name)
        stream = torch.cuda.current_stream(self.device).cuda_stream
        self.contexts: list[tensorrt.IExecutionContext] = []
        for profile in range(len(info.profiles)):
            context = engine.create_execution_context()
            if context is None or not context.set_optimization_profile_async(profile, stream):
                detail = f"no execution context for profile {profile}: {self.log.last_error}"
                raise Awq2TrtError(engine_path, detail=detail)
            self.contexts.append(context)
        self.profile_names = [p.name for p in info.profiles]
        self.late_outputs: dict[tuple[int, str], _LateOutput] = {}
        self.allocators: dict[tuple[int, str], tensorrt.IOutputAllocator] = {}  # kept: TensorRT holds raw pointers
        # TensorRT wants a non-null, 256-byte aligned address even for empty tensors: one small buffer each side.
        self.placeholder = {
            False: torch.empty(256, dtype=torch.uint8, device=self.device),
            True: torch.empty(256, dtype=torch.uint8),
        }
        torch.cuda.current_stream(self.device).synchronize()

    def run(self, profile: int, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        context = self.contexts[profile]
        held: list[torch.Tensor] = []  # the inputs' buffers, alive until the launch has read them
        for name in self.inputs:
            if name not in inputs:
                raise Awq2TrtError(self.path, expected=f"a value for the engine input {name}", got="none")
            host = name in self.on_host
            tensor = inputs[name].to("cpu" if host else self.device, self.dtypes[name]).contiguous()
            if not context.set_input_shape(name, tuple(tensor.shape)):
                raise Awq2TrtError(
                    name,
                    expected=f"a shape inside the engine's {self.profile_names[profile]} profile (engine.json)",
                    got=tuple(tensor.shape),
                )
            held.append(tensor)
            address = tensor.data_ptr() if tensor.numel() else self.placeholder[host].data_ptr()
            context.set_tensor_address(name, address)
        outputs: dict[str, torch.Tensor] = {}
        late: dict[str, _LateOutput] = {}
        for name in self.outputs:
            dims = context.get_tensor_shape(name)
            shape = tuple(dims[i] for i in range(len(dims)))
            if any(d < 0 for d in shape):  # data-dependent: TensorRT asks for the memory once it knows the size
                late[name] = self.late_outputs.setdefault((profile, name), _LateOutput(self.device))
                if (profile, name) not in self.allocators:
                    self.allocators[profile, name] = _output_allocator(late[name])
                    context.set_output_allocator(name, self.allocators[profile, name])
                continue
            out = torch.empty(shape, dtype=self.dtypes[name], device=self.device)
            context.set_tensor_address(name, out.data_ptr() if out.numel() else self.placeholder[False].data_ptr())
            outputs[name] = out
        stream = torch.cuda.current_stream(self.device)
        if not context.execute_async_v3(stream.cuda_stream):
            raise Awq2TrtError(self.path, detail=f"TensorRT could not run it: {self.log.last_error}")
        if late:
            stream.synchronize()  # the shapes are reported when the run has computed them
            for name, output in late.items():
                # A copy: the allocator's buffer is reused by the next run while this output may still be held.
                outputs[name] = output.tensor(self.dtypes[name]).clone()
        return outputs
