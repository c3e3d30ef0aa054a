"""One line for every exception: a TensorFlow graph error says its cause, not `in user code:`."""

import numpy as np
import pytest

from zoo.errors import ZooError, one_line


def test_a_graph_error_is_its_cause_not_in_user_code():
    import tensorflow as tf

    @tf.function
    def preprocess(images):  # numpy on a symbolic tensor: fine eagerly, an error once traced
        return np.asarray(images) / 255.0

    with pytest.raises(Exception) as caught:
        preprocess(tf.zeros((1, 4, 4, 3)))
    assert str(caught.value).strip().splitlines()[0].endswith("in user code:")  # what TensorFlow says first
    line = one_line(caught.value)
    assert "in user code" not in line and "symbolic" in line and "\n" not in line


def test_other_errors_are_their_type_and_first_line():
    assert one_line(ValueError("bad value\nmore detail")) == "ValueError: bad value"
    assert one_line(ZooError("what to do")) == "what to do"
    assert one_line(KeyError()) == "KeyError"
