"""TFLite: a Keras model converted to a `.tflite` flatbuffer, and run in the LiteRT interpreter.

One place for both, so `zoo export`, `zoo predict` and feature extraction through TFLite share
them. The interpreter is LiteRT's (`ai_edge_litert`, the cpu extra), with XNNPACK on
`num_threads` threads. Quantized inputs and outputs are (de)quantized here, so callers always
pass float32 batches and get float32 back.

The converter reads the model's traced graph, its variables frozen, in a child process: for
`convert`, `python -m zoo.tflite` on the model's SavedModel export; for feature extraction,
zoo.runtime's, which builds the backbone itself. In the bench's process, what the converter
kept made `zoo bench --all` grow backbone by backbone (its rows' peaks rose from 2245 to 3003 MB
in benchmarks/results/bench_floor.json as committed in 90994c3; 1605-2135 MB, not climbing, at
57911ce). The child costs a TensorFlow import, a few seconds, once per converted model.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from zoo import quiet
from zoo.errors import ZooError, one_line

QUANTIZE = ("none", "float16", "int8")


def reason(exc: BaseException) -> str:
    """Why conversion or the interpreter failed, in a few words: the op TFLite lacks where that is it."""
    text = one_line(exc)
    missing = re.search(r"'(tf\.\w+)' op is neither a custom op nor a flex op", text)
    if missing:
        # The converter's later lines give the op's operand types: TFLite has Conv2D, but not on float16.
        operands = re.search(rf'"{re.escape(missing[1])}"\(.*?: \(([^)]*)\)', str(exc))
        halves = sorted(set(re.findall(r"tensor<(?:[?\d]+x)*(b?f16)>", operands[1] if operands else "")))
        if halves:
            kind = "/".join("bfloat16" if half == "bf16" else "float16" for half in halves)
            return f"{missing[1]} on {kind} tensors is not a TFLite op (mixed precision: build the model in float32)"
        return f"{missing[1]} is not a TFLite op"
    return text if len(text) <= 200 else text[:200] + "…"


class ConversionStopped(ZooError):
    """The converter did not fail but was stopped (killed): the model may yet convert."""


def convert(model, quantize: str = "none", calibration: Iterable[np.ndarray] | None = None) -> bytes:
    """A Keras model as TFLite bytes, converted from its SavedModel export (in a child process).

    `float16` halves the weights; `int8` is full-integer post-training quantization (integer
    ops only, uint8 input for 0..255 pixels, float32 output), calibrated on `calibration`:
    float32 batches of the model's input, a few hundred images in all. A model TFLite cannot
    hold is a ZooError saying why (`TFLite conversion failed: tf.EagerPyFunc is not a TFLite op`).
    """
    if quantize not in QUANTIZE:
        raise ZooError(f"--quantize {quantize}: use one of {', '.join(QUANTIZE)}")
    if quantize == "int8" and calibration is None:
        raise ZooError("int8 quantization needs calibration images: give --data DIR")
    with tempfile.TemporaryDirectory(prefix="zoo-tflite-") as folder:
        work = Path(folder)
        _export(model, work)
        if calibration is not None and quantize == "int8":
            np.save(work / "calibration.npy", np.concatenate([np.asarray(b, np.float32) for b in calibration]))
        child = subprocess.run(
            [sys.executable, "-m", "zoo.tflite", folder, quantize], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        if child.returncode < 0:  # SIGKILL: the kernel's out-of-memory killer, say
            raise ConversionStopped(
                f"the TFLite converter was stopped by signal {-child.returncode} (out of memory?); "
                "it converts again on the next bench"
            )
        if child.returncode != 0:
            error = work / "error.txt"
            lines = child.stderr.decode(errors="replace").strip().splitlines()
            why = error.read_text() if error.is_file() else (lines[-1][-300:] if lines else f"exit {child.returncode}")
            raise ZooError(f"TFLite conversion failed: {why}")
        return (work / "model.tflite").read_bytes()


def convert_here(model) -> bytes:
    """A Keras model as float32 TFLite bytes, converted in this process: for a process that
    exists to convert (zoo.runtime's), where what the converter keeps goes when it ends."""
    from zoo.metrics import compiled_forward

    try:
        with quiet.native_stderr():
            return _converted(compiled_forward(model).get_concrete_function(), "none")
    except Exception as exc:
        raise ZooError(f"TFLite conversion failed: {reason(exc)}") from None


def _export(model, folder: Path) -> None:
    """The model's SavedModel export, `folder`/model, which `convert`'s child reads."""
    try:
        with quiet.native_stderr():
            model.export(str(folder / "model"), verbose=False)
    except Exception as exc:
        raise ZooError(f"TFLite conversion failed: {reason(exc)}") from None


def _converted(function, quantize: str, calibration: np.ndarray | None = None) -> bytes:
    """A traced function (one image batch in, one output) as TFLite bytes, quantized as asked,
    int8 calibrated on `calibration`. Given the function alone, the converter freezes its
    variables into constants and reads the graph as it is (warning that this way is deprecated);
    from a SavedModel, or given the function's owner, it saves and imports one, which was most
    of its time (conversion_seconds in benchmarks/results/bench_floor.json, eight backbones:
    109.8 s that way at 57911ce, 20.6 s this way). Frozen apart beforehand, it held more memory."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_concrete_functions([function])
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        if calibration is None:
            raise ValueError("int8 quantization needs calibration images")
        images = calibration
        converter.representative_dataset = lambda: ([image[None].astype(np.float32)] for image in images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.float32
    return converter.convert()


class Runner:
    """A `.tflite` model (a path or its bytes) ready to run on batches of any size.

    `batch_size` is the batch the interpreter runs, for speed (None: each batch as it comes):
    a larger batch is run in pieces of it, the last padded, so the interpreter keeps one
    allocation; a smaller one (a single image, for latency) runs as it is.
    """

    def __init__(self, model: str | os.PathLike | bytes, num_threads: int | None = None, batch_size: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        threads = num_threads or os.cpu_count() or 1
        source = {"model_content": model} if isinstance(model, bytes) else {"model_path": os.fspath(model)}
        try:
            with quiet.native_stderr():
                self.interpreter = Interpreter(**source, num_threads=threads)
        except (ValueError, RuntimeError) as exc:
            name = "these bytes" if isinstance(model, bytes) else Path(model).name
            raise ZooError(f"{name} is not a TFLite model the interpreter can load ({exc}); export it again") from None
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        self._allocated = 0
        self.batch_size = batch_size

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The input shape of one image, e.g. (224, 224, 3)."""
        return tuple(int(d) for d in self._input["shape"][1:])

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """The model's float32 outputs for a batch of images (e.g. 0..255 RGB), float32 or uint8:
        uint8 pixels are cast as they are copied into the interpreter, with no float copy first."""
        batch = np.asarray(batch)
        if batch.shape[1:] != self.input_shape:
            raise ZooError(f"the model takes images of shape {self.input_shape}, not {batch.shape[1:]}")
        size = self.batch_size or len(batch)
        if len(batch) <= size:
            return self._invoke(batch, len(batch))
        pieces = [self._invoke(batch[start : start + size], size) for start in range(0, len(batch), size)]
        return np.concatenate(pieces)  # the last piece padded with zeros to `size`: one allocation

    def _invoke(self, piece: np.ndarray, rows: int) -> np.ndarray:
        """The outputs of `piece`, run as a batch of `rows` (the rows past the piece zeros)."""
        if rows != self._allocated:
            self.interpreter.resize_tensor_input(self._input["index"], [rows, *self.input_shape])
            with quiet.native_stderr():  # the first allocation creates XNNPACK's delegate, and says so
                self.interpreter.allocate_tensors()
            self._input = self.interpreter.get_input_details()[0]
            self._output = self.interpreter.get_output_details()[0]
            self._allocated = rows
        if self._input["dtype"] == np.float32:
            view = self.interpreter.tensor(self._input["index"])()  # the input's own buffer
            view[: len(piece)] = piece
            view[len(piece) :] = 0
            del view  # the interpreter refuses to run while a view of its buffers is held
        else:
            padded = np.zeros((rows, *self.input_shape), np.float32)
            padded[: len(piece)] = piece
            self.interpreter.set_tensor(self._input["index"], _quantize(padded, self._input))
        self.interpreter.invoke()
        return _dequantize(self.interpreter.get_tensor(self._output["index"]), self._output)[: len(piece)]


def _quantize(values: np.ndarray, detail: dict) -> np.ndarray:
    """`values` as the input tensor takes them: quantized where it has a scale (int8 export),
    else cast (float32 as is; a model that takes float16 or uint8)."""
    dtype = detail["dtype"]
    scale, zero = detail["quantization"]
    if not scale:
        return values.astype(dtype, copy=False)
    info = np.iinfo(dtype)
    return np.clip(np.round(values / scale + zero), info.min, info.max).astype(dtype)


def _dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    """An output tensor as float32: dequantized where it has a scale, else cast (a model whose
    features are float16 or integers)."""
    scale, zero = detail["quantization"]
    if not scale:
        return values.astype(np.float32)  # a copy: the interpreter reuses its buffer
    return ((values.astype(np.float32) - zero) * scale).astype(np.float32)


if __name__ == "__main__":  # the converter's child process: python -m zoo.tflite FOLDER QUANTIZE
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    work = Path(sys.argv[1])
    try:
        import tensorflow as tf

        loaded = tf.saved_model.load(str(work / "model"))  # kept: its signature uses its variables
        serving = loaded.signatures["serving_default"]
        calibration_file = work / "calibration.npy"
        calibration = np.load(calibration_file, mmap_mode="r") if calibration_file.is_file() else None
        (work / "model.tflite").write_bytes(_converted(serving, sys.argv[2], calibration))
    except Exception as exc:
        (work / "error.txt").write_text(reason(exc))
        sys.exit(1)
