"""TFLite: a Keras model converted to a `.tflite` flatbuffer, and run in the LiteRT interpreter.

One place for both, so `zoo export`, `zoo predict` and feature extraction through TFLite share
them. The interpreter is LiteRT's (`ai_edge_litert`, the cpu extra), with XNNPACK on
`num_threads` threads. Quantized inputs and outputs are (de)quantized here, so callers always
pass float32 batches and get float32 back.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from zoo import quiet
from zoo.errors import ZooError

QUANTIZE = ("none", "float16", "int8")


def convert(model, quantize: str = "none", calibration: Iterable[np.ndarray] | None = None) -> bytes:
    """A Keras model as TFLite bytes, converted from its SavedModel export.

    `float16` halves the weights; `int8` is full-integer post-training quantization (integer
    ops only, uint8 input for 0..255 pixels, float32 output), calibrated on `calibration`:
    float32 batches of the model's input, a few hundred images in all.
    """
    import tempfile

    import tensorflow as tf

    if quantize not in QUANTIZE:
        raise ZooError(f"--quantize {quantize}: use one of {', '.join(QUANTIZE)}")
    if quantize == "int8" and calibration is None:
        raise ZooError("int8 quantization needs calibration images: give --data DIR")
    with tempfile.TemporaryDirectory(prefix="zoo-tflite-") as folder, quiet.native_stderr():
        model.export(folder, verbose=False)  # from_keras_model does the same, printing every variable
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "int8":
            converter.representative_dataset = lambda: _samples(calibration)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.float32
        return converter.convert()


def _samples(batches):
    """The converter's representative dataset: one image at a time."""
    for batch in batches:
        for image in np.asarray(batch, np.float32):
            yield [image[None]]


class Runner:
    """A `.tflite` model (a path or its bytes) ready to run on batches of any size."""

    def __init__(self, model: str | os.PathLike | bytes, num_threads: int | None = None):
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
        self._batch = 0

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The input shape of one image, e.g. (224, 224, 3)."""
        return tuple(int(d) for d in self._input["shape"][1:])

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """The model's float32 outputs for a float32 batch (e.g. 0..255 RGB images)."""
        batch = np.asarray(batch, np.float32)
        if batch.shape[1:] != self.input_shape:
            raise ZooError(f"the model takes images of shape {self.input_shape}, not {batch.shape[1:]}")
        if len(batch) != self._batch:
            self.interpreter.resize_tensor_input(self._input["index"], [len(batch), *self.input_shape])
            with quiet.native_stderr():  # the first allocation creates XNNPACK's delegate, and says so
                self.interpreter.allocate_tensors()
            self._input = self.interpreter.get_input_details()[0]
            self._output = self.interpreter.get_output_details()[0]
            self._batch = len(batch)
        self.interpreter.set_tensor(self._input["index"], _quantize(batch, self._input))
        self.interpreter.invoke()
        return _dequantize(self.interpreter.get_tensor(self._output["index"]), self._output)


def _quantize(values: np.ndarray, detail: dict) -> np.ndarray:
    dtype = detail["dtype"]
    if dtype == np.float32:
        return values
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(values / scale + zero), info.min, info.max).astype(dtype)


def _dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return values.copy()
    scale, zero = detail["quantization"]
    return ((values.astype(np.float32) - zero) * scale).astype(np.float32)
