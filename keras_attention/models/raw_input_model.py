"""`RawInputModel`: a functional model that takes strings as users hold them.

Keras' data adapters (`fit`, `evaluate`, `predict`) accept string inputs
only as `tf.string` tensors, `tf.data` datasets or numpy object arrays of
`str`: a numpy unicode or bytes array fails with "Invalid dtype: str352"
(`keras.backend.standardize_dtype` knows no `<U..`/`S..` dtype), and a
Python list of strings with "Unrecognized data type" (a list is not an
array to them); calling the model on a list reads it as several inputs.
`RawInputModel` turns those into one `tf.string` tensor before Keras sees
them, in every entry point, and is otherwise a plain functional model:
same config, same SavedModel export.
"""

import keras
import numpy as np

_TEXT = (str, bytes, np.str_, np.bytes_)


def _all_text(values):
    """Whether a (nested) list/tuple holds strings only, and at least one."""
    if not values:
        return False
    return all(
        _all_text(v) if isinstance(v, (list, tuple)) else isinstance(v, _TEXT)
        for v in values
    )


def _as_string_tensor(x):
    """`x` as a `tf.string` tensor if it is string-like, else `x` unchanged.

    String-like: a numpy unicode (`<U..`) or bytes (`S..`) array, an object
    array of `str`/`bytes`, or a (nested) list or tuple of `str`/`bytes`.
    """
    if isinstance(x, np.ndarray):
        text = x.dtype.kind in "US" or (
            x.dtype.kind == "O" and x.size and all(isinstance(v, _TEXT) for v in x.flat)
        )
    else:
        text = isinstance(x, (list, tuple)) and _all_text(x)
    return keras.ops.convert_to_tensor(x, dtype="string") if text else x


@keras.saving.register_keras_serializable(package="keras_attention")
class RawInputModel(keras.Model):
    """A functional model whose inputs may be strings in any usual container.

    Built like any functional model (`RawInputModel(inputs, outputs)`);
    `keras_attention.models.with_preprocessing` returns one. Wherever a
    `tf.string` tensor is accepted (`model(x)`, `predict`, `evaluate`,
    `fit` and its `validation_data`, `*_on_batch`), it also accepts a Python
    list or tuple of `str`/`bytes` and numpy unicode, bytes or object
    arrays, and gives the same results. Other inputs (numbers, tensors,
    `tf.data` datasets, symbolic inputs) pass through untouched. With
    several inputs, a list or tuple holds one value per input, and a dict
    one value per input name.

    It saves to `.keras` as its functional config (loading needs
    `import keras_attention`, as for every class of this package, and no
    `custom_objects`), and `model.export()` writes the same SavedModel as
    the plain functional model: its endpoint takes `tf.string` tensors.

    Example:

    ```python
    vectorizer = keras.layers.TextVectorization(output_sequence_length=4)
    vectorizer.adapt(["a good film", "a bad film"])
    raw = keras.Input((), dtype="string")
    ids = vectorizer(raw)
    model = RawInputModel(raw, keras.layers.Embedding(10, 2)(ids))
    model.predict(["a good film", "bad"], verbose=0).shape  # (2, 4, 2)
    ```
    """

    def _raw_inputs(self, x):
        if isinstance(x, dict):
            return {key: _as_string_tensor(value) for key, value in x.items()}
        if len(self.inputs) > 1 and isinstance(x, (list, tuple)):
            values = [_as_string_tensor(value) for value in x]
            return values if isinstance(x, list) else tuple(values)
        return _as_string_tensor(x)

    def __call__(self, *args, **kwargs):
        if args:
            args = (self._raw_inputs(args[0]),) + args[1:]
        elif "inputs" in kwargs:
            kwargs["inputs"] = self._raw_inputs(kwargs["inputs"])
        return super().__call__(*args, **kwargs)

    def fit(self, x=None, y=None, *args, **kwargs):
        validation = kwargs.get("validation_data")
        if isinstance(validation, (list, tuple)) and validation:
            kwargs["validation_data"] = (self._raw_inputs(validation[0]),) + tuple(validation[1:])
        return super().fit(self._raw_inputs(x), y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        return super().evaluate(self._raw_inputs(x), y, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        return super().predict(self._raw_inputs(x), *args, **kwargs)

    def train_on_batch(self, x, y=None, *args, **kwargs):
        return super().train_on_batch(self._raw_inputs(x), y, *args, **kwargs)

    def test_on_batch(self, x, y=None, *args, **kwargs):
        return super().test_on_batch(self._raw_inputs(x), y, *args, **kwargs)

    def predict_on_batch(self, x):
        return super().predict_on_batch(self._raw_inputs(x))
