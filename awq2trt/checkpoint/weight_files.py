"""Find and read the weight files of a Hugging Face folder, lazily, one tensor at a time.

Only the checkpoint's own files are read: the shards an index names, or ``model*.safetensors``.  Other
``*.safetensors`` in the folder (reference outputs, adapters, ...) are never touched.  Pickle-based weights
(``.bin``/``.pt``/``.pth``) can execute code when loaded and are refused unless the caller opts in; even then
they are loaded with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
import stat
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from awq2trt.errors import Awq2TrtError
from awq2trt.untrusted_json import parse_json, read_json_file

if TYPE_CHECKING:
    import torch

INDEX_NAME = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth")
_NUMPY_DTYPES = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "I8": "i1", "U8": "u1", "I16": "<i2", "U16": "<u2",
                 "I32": "<i4", "U32": "<u4", "I64": "<i8", "U64": "<u8", "BOOL": "?"}  # fmt: skip
_ITEMSIZE = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8, "I8": 1, "U8": 1, "I16": 2, "U16": 2, "I32": 4, "U32": 4,
             "I64": 8, "U64": 8, "BOOL": 1}  # fmt: skip


def _read_safetensors_header(path: Path) -> tuple[dict[str, dict], int]:
    """Parse and sanity-check a safetensors header ourselves, so a truncated or corrupt file fails here."""
    try:
        status = path.stat()
        if not stat.S_ISREG(status.st_mode):  # a FIFO or device would block or never end
            raise Awq2TrtError(path, expected="a regular safetensors file", got="a special file")
        size = status.st_size
        with path.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise Awq2TrtError(path, expected="a safetensors file", got=f"{size} bytes")
            (header_len,) = struct.unpack("<Q", head)
            if header_len > size - 8 or header_len > 100_000_000:
                raise Awq2TrtError(path, expected="a safetensors header that fits the file", got=f"{header_len} bytes")
            raw = fh.read(header_len)
    except OSError as exc:
        raise Awq2TrtError(path, expected="a readable safetensors file", got=type(exc).__name__) from exc
    # A repeated tensor name would make json keep the last entry and hide the first one's bytes.
    header = parse_json(raw, f"{path}: header", unique_keys=True)
    if not isinstance(header, dict):
        raise Awq2TrtError(path, expected="a safetensors JSON header", got=type(header).__name__)
    data_size = size - 8 - header_len
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict):
                raise Awq2TrtError(f"{path}: __metadata__", expected="an object of strings", got=type(info).__name__)
            continue
        where = f"{path}: {name}"
        if not isinstance(info, dict):
            raise Awq2TrtError(where, expected="dtype, shape and data_offsets", got=info)
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in _ITEMSIZE:  # a list or object is not even hashable
            raise Awq2TrtError(where, expected="a numeric safetensors dtype", got=dtype)
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise Awq2TrtError(where, expected="a shape of non-negative integers", got=shape)
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise Awq2TrtError(where, expected="data_offsets [begin, end]", got=offsets)
        begin, end = offsets
        if not 0 <= begin <= end <= data_size:
            raise Awq2TrtError(where, expected=f"data within the file ({data_size} bytes)", got=f"bytes {begin}..{end}")
        if end - begin != math.prod(shape) * _ITEMSIZE[dtype]:
            raise Awq2TrtError(
                where, expected=f"{math.prod(shape) * _ITEMSIZE[dtype]} bytes for {dtype} {shape}", got=end - begin
            )
        spans.append((begin, end))
    # The tensors must tile the data area exactly (what the safetensors library itself insists on).
    position = 0
    for begin, end in sorted(spans):
        if begin != position:
            raise Awq2TrtError(path, expected="tensors stored back to back", got=f"a gap or overlap at byte {begin}")
        position = end
    if position != data_size:
        raise Awq2TrtError(path, expected=f"{position} bytes of tensor data", got=f"{data_size} bytes")
    return header, 8 + header_len


class WeightFiles:
    """Lazy access to every tensor of a checkpoint by name."""

    def __init__(self, folder: Path, *, allow_pickle: bool = False) -> None:
        self.folder = folder
        self._file_of: dict[str, Path] = {}
        self._meta: dict[str, tuple[str, list[int]]] = {}
        self._pickled: dict[str, np.ndarray] | None = None
        self._offsets: dict[str, tuple[int, int]] = {}  # absolute byte range of each safetensors tensor
        self._index_map: dict[str, str] | None = None
        index = folder / INDEX_NAME
        files = self._files_from_index(index) if index.exists() else sorted(folder.glob("model*.safetensors"))
        if not files:
            pickled = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
            if pickled and not allow_pickle:
                raise Awq2TrtError(
                    pickled[0],
                    expected="safetensors weights (pickle files can run code when loaded)",
                    got="pickle-based weights",
                    detail="convert them to safetensors, or pass --allow-pickle if you trust the file",
                )
            if pickled:
                self._load_pickled(pickled)
                return
            raise Awq2TrtError(folder, expected="model.safetensors, model-*.safetensors or " + INDEX_NAME, got="none")
        for path in files:
            header, data_start = _read_safetensors_header(path)
            for name, info in header.items():
                if name == "__metadata__":
                    continue
                if name in self._file_of:
                    raise Awq2TrtError(
                        path, expected=f"tensor {name} stored once", got=f"also in {self._file_of[name].name}"
                    )
                self._file_of[name] = path
                self._meta[name] = (info["dtype"], list(info["shape"]))
                begin, end = info["data_offsets"]
                self._offsets[name] = (data_start + begin, data_start + end)
        self._check_index_map()
        self.files = files

    def _check_index_map(self) -> None:
        """A tensor the index places in one shard is not stored in another (the index describes other files).

        Tensors the index lists but no shard holds are left to the readers that need them, which name them.
        """
        for name, shard in (self._index_map or {}).items():
            found = self._file_of.get(name)
            if found is not None and found.name != shard:
                raise Awq2TrtError(
                    self.folder / INDEX_NAME, expected=f"tensor {name[:80]} in {shard}", got=f"it is in {found.name}"
                )

    def _files_from_index(self, index: Path) -> list[Path]:
        # A repeated tensor name would leave it unclear which shard holds it.
        data = read_json_file(index, unique_keys=True)
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise Awq2TrtError(index, expected='a non-empty "weight_map" object', got=_kind(weight_map))
        files: dict[str, Path] = {}
        for shard in weight_map.values():  # each checked before use as a key: a list or object is not hashable
            if isinstance(shard, str) and shard in files:
                continue
            files[shard] = self._shard_path(index, shard)
        self._index_map = weight_map
        return list(files.values())

    def _shard_path(self, index: Path, shard: object) -> Path:
        """The folder's own file an index entry names; never a path that leaves the folder.

        A shard is a bare ``*.safetensors`` name of a regular file in the folder (no ``..``, no absolute path,
        no sub-folder, not config.json or a device).  The file itself may be a symlink: the Hugging Face cache
        stores every snapshot file as a link to ``../../blobs/``, and the link is the folder's own entry.
        """
        if not isinstance(shard, str) or not shard.endswith(".safetensors") or "\0" in shard:
            raise Awq2TrtError(index, expected="shard names ending in .safetensors", got=repr(shard)[:200])
        if Path(shard).name != shard or shard in (".", "..") or "/" in shard or "\\" in shard:
            raise Awq2TrtError(index, expected="shard file names inside the checkpoint folder", got=repr(shard)[:200])
        path = self.folder / shard
        try:
            exists = path.is_file()
        except OSError as exc:  # a name too long for the file system, a link loop...
            raise Awq2TrtError(index, expected=f"shard {shard[:80]} to exist", got=exc.strerror) from None
        if not exists:
            raise Awq2TrtError(index, expected=f"shard {shard[:80]} to exist", got="missing file")
        return path

    def _load_pickled(self, paths: list[Path]) -> None:
        import torch

        tensors: dict[str, np.ndarray] = {}
        for path in paths:
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # torch raises many types for corrupt or unsafe pickles
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise Awq2TrtError(path, expected="a torch state dict of tensors", got=reason) from exc
            if not isinstance(state, dict):
                raise Awq2TrtError(path, expected="a state dict (name -> tensor)", got=type(state).__name__)
            for name, value in state.items():
                if not isinstance(value, torch.Tensor):
                    raise Awq2TrtError(f"{path}: {name}", expected="a tensor", got=type(value).__name__)
                tensors[name] = _to_numpy(value)
                self._file_of[name] = path
                self._meta[name] = (_numpy_dtype_name(tensors[name].dtype), list(tensors[name].shape))
        self._pickled = tensors
        self.files = paths

    def names(self) -> list[str]:
        return list(self._file_of)

    def __contains__(self, name: str) -> bool:
        return name in self._file_of

    def shape(self, name: str) -> list[int]:
        return self._meta[name][1]

    def dtype_name(self, name: str) -> str:
        return self._meta[name][0]

    def nbytes(self, name: str) -> int:
        return math.prod(self.shape(name)) * _ITEMSIZE[self.dtype_name(name)]

    def file_of(self, name: str) -> Path:
        return self._file_of[name]

    def get(self, name: str) -> np.ndarray:
        """One tensor as a numpy array (bf16 widened exactly to fp32, since numpy has no bf16)."""
        if name not in self._file_of:
            raise Awq2TrtError(f"{self.folder}: {name}", expected="this tensor in the checkpoint", got="no such tensor")
        if self._pickled is not None:
            return self._pickled[name]
        # Plain positioned reads, not a memory map: a mapped file's touched pages count as resident memory,
        # and streaming a 7B checkpoint through a map would make the process look (and be charged) 4 GB big.
        path = self._file_of[name]
        dtype_name, shape = self._meta[name]
        begin, end = self._offsets[name]
        try:
            raw = bytearray(end - begin)  # writable, so the array below needs no copy
            with path.open("rb") as fh:
                fh.seek(begin)
                got = fh.readinto(raw)
        except OSError as exc:
            raise Awq2TrtError(f"{path}: {name}", expected="a readable tensor", got=exc.strerror) from exc
        if got != end - begin:
            raise Awq2TrtError(f"{path}: {name}", expected=f"{end - begin} bytes", got=f"{got} (file changed?)")
        if dtype_name == "BF16":  # numpy has no bf16: widen exactly to fp32 (bf16 is fp32's top half)
            return (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32).reshape(shape)
        return np.frombuffer(raw, dtype=_NUMPY_DTYPES[dtype_name]).reshape(shape)

    def items(self) -> Iterator[tuple[str, np.ndarray]]:
        for name in self._file_of:
            yield name, self.get(name)


# The inverse of _NUMPY_DTYPES, so the two spellings cannot drift apart.
_NUMPY_TO_SAFETENSORS = {np.dtype(numpy_name).name: name for name, numpy_name in _NUMPY_DTYPES.items()}


def _kind(value: object) -> str:
    """What a wrong JSON value was, short enough for one error line."""
    return repr(value)[:80] if isinstance(value, (dict, list)) and value else type(value).__name__


def _numpy_dtype_name(dtype: np.dtype) -> str:
    """The safetensors spelling of a numpy dtype, so pickled and safetensors weights describe alike."""
    return _NUMPY_TO_SAFETENSORS.get(str(dtype), str(dtype))


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    import torch

    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return tensor.contiguous().numpy()
