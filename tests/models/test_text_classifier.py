import keras
import numpy as np
import pytest

from model_checks import check_builder_model
from keras_attention.models import compile_classifier
from keras_attention.models import text_classifier
from keras_attention.models import with_preprocessing


def _batch(length=16, vocabulary=50, batch=4):
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, vocabulary, (batch, length)).astype("int32")
    tokens[1, 5:] = 0
    return tokens, np.array([0, 1, 2, 1])


@pytest.mark.parametrize(
    "attention,pooling",
    [("multi_head", "attention"), ("linear", "mean"), ("low_rank", "first"), ("regional", "attention")],
)
def test_builds_trains_saves_exports(attention, pooling, tmp_path):
    model = text_classifier(
        50, 3, 16, hidden_dim=16, num_layers=1, num_heads=2,
        attention=attention, pooling=pooling,
    )
    compile_classifier(model)
    tokens, labels = _batch()
    (logits,) = check_builder_model(model, tokens, labels, tmp_path)
    assert logits.shape == (4, 3)


def test_padding_does_not_change_logits():
    model = text_classifier(50, 2, 16, hidden_dim=16, num_layers=2, num_heads=2)
    tokens, _ = _batch()
    changed = tokens.copy()
    # Row 1 is padding after position 5: what sits there (as ids) is
    # masked, but the padding id is 0, so compare two paddings of one
    # sentence at different lengths instead.
    short = tokens[1:2, :5]
    padded_16 = np.pad(short, ((0, 0), (0, 11)))
    a = model.predict(padded_16, verbose=0)
    changed = padded_16.copy()
    changed[0, 5:] = 0
    b = model.predict(changed, verbose=0)
    np.testing.assert_allclose(a, b, atol=1e-6)
    # A real token change does change the logits.
    changed[0, 2] = (changed[0, 2] % 49) + 1
    assert np.abs(model.predict(changed, verbose=0) - a).max() > 1e-6


def test_pooling_ignores_padding_values():
    # Mean pooling over masked positions: appending padding must not change
    # the pooled features; compare logits of the same tokens whose padded
    # tail differs only in position (the model never sees the tail).
    model = text_classifier(50, 2, 16, hidden_dim=16, num_layers=1, num_heads=2, pooling="mean")
    tokens = np.zeros((2, 16), "int32")
    tokens[:, :4] = [[3, 4, 5, 6], [3, 4, 5, 6]]
    out = model.predict(tokens, verbose=0)
    np.testing.assert_allclose(out[0], out[1], atol=1e-6)
    assert np.all(np.isfinite(model.predict(np.zeros((1, 16), "int32"), verbose=0)))


def test_raw_string_model_round_trips(tmp_path):
    vectorizer = keras.layers.TextVectorization(max_tokens=50, output_sequence_length=16)
    vectorizer.adapt(["a good film", "a bad film", "not good at all"])
    model = text_classifier(vectorizer.vocabulary_size(), 2, 16, hidden_dim=16, num_layers=1, num_heads=2)
    raw = with_preprocessing(model, vectorizer)
    texts = np.array(["a good film", "not bad"])
    from helpers import assert_export_roundtrip, assert_keras_roundtrip

    assert_keras_roundtrip(raw, texts, tmp_path)
    assert_export_roundtrip(raw, texts, tmp_path)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"vocabulary_size": 0}, "vocabulary_size"),
        ({"num_classes": 1}, "num_classes"),
        ({"attention": "nope"}, r"text_classifier.*attention.*one of \[.*multi_head"),
        ({"num_heads": 3}, "num_heads"),
        ({"pooling": "max"}, "pooling"),
        ({"dropout": 1.0}, "dropout"),
        ({"attention_kwargs": [1]}, "attention_kwargs"),
    ],
)
def test_bad_config_errors(kwargs, match):
    arguments = dict(vocabulary_size=50, num_classes=2, sequence_length=16, hidden_dim=16, num_layers=1, num_heads=2)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        text_classifier(**arguments)


def _raw_model():
    vectorizer = keras.layers.TextVectorization(max_tokens=50, output_sequence_length=16)
    vectorizer.adapt(["a good film", "a bad film", "not good at all"])
    model = text_classifier(vectorizer.vocabulary_size(), 2, 16, hidden_dim=16, num_layers=1, num_heads=2)
    raw = with_preprocessing(model, vectorizer)
    raw.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
    )
    return raw


TEXTS = ["a good film", "bad", "not good at all"]
# What a user passes for a batch of texts, beside the string tensor.
STRING_LIKE = {
    "list": lambda: list(TEXTS),
    "tuple": lambda: tuple(TEXTS),
    "unicode array": lambda: np.array(TEXTS),
    "bytes array": lambda: np.array([t.encode() for t in TEXTS]),
    "object array": lambda: np.array(TEXTS, dtype=object),
    "object array of bytes": lambda: np.array([t.encode() for t in TEXTS], dtype=object),
    "list of bytes": lambda: [t.encode() for t in TEXTS],
}


def _check_string_inputs(raw):
    import tensorflow as tf

    labels = np.array([1, 0, 1])
    reference = raw.predict(tf.constant(TEXTS), verbose=0)
    reference_loss = raw.evaluate(tf.constant(TEXTS), labels, verbose=0)
    assert reference.shape == (3, 2)
    for kind, make in STRING_LIKE.items():
        np.testing.assert_allclose(raw.predict(make(), verbose=0), reference, atol=1e-6, err_msg=kind)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(raw(make())), reference, atol=1e-6, err_msg=kind)
        np.testing.assert_allclose(raw.predict_on_batch(make()), reference, atol=1e-6, err_msg=kind)
        np.testing.assert_allclose(raw.evaluate(make(), labels, verbose=0), reference_loss, rtol=1e-5, err_msg=kind)
        np.testing.assert_allclose(raw.test_on_batch(make(), labels), reference_loss, rtol=1e-5, err_msg=kind)
    return reference


def test_raw_string_model_takes_lists_and_numpy_strings(tmp_path):
    raw = _raw_model()
    reference = _check_string_inputs(raw)
    path = str(tmp_path / "raw.keras")
    raw.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(_check_string_inputs(restored), reference, atol=1e-6)


def test_raw_string_model_trains_on_a_list_as_on_the_tensor():
    import tensorflow as tf

    labels = np.array([1, 0, 1])
    losses = {}
    for kind, texts in [("tensor", tf.constant(TEXTS)), ("list", list(TEXTS)), ("unicode array", np.array(TEXTS))]:
        raw = _raw_model()  # the same seed: the same initial weights
        history = raw.fit(
            texts, labels, batch_size=2, epochs=2, shuffle=False, verbose=0,
            validation_data=(texts, labels),
        )
        losses[kind] = history.history["loss"] + history.history["val_loss"]
        losses[kind + " on batch"] = float(raw.train_on_batch(texts, labels))
        keras.utils.set_random_seed(1234)
    for kind in ("list", "unicode array"):
        np.testing.assert_allclose(losses[kind], losses["tensor"], rtol=1e-5, err_msg=kind)
        np.testing.assert_allclose(losses[kind + " on batch"], losses["tensor on batch"], rtol=1e-5)


def test_raw_string_model_exports_a_string_endpoint(tmp_path):
    from helpers import assert_export_roundtrip

    raw = _raw_model()
    # The served endpoint (fed a string tensor made from the unicode array)
    # gives what the model gives on the unicode array, which is what it
    # gives on a Python list.
    expected = raw.predict(list(TEXTS), verbose=0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(raw(np.array(TEXTS))), expected, atol=1e-6)
    assert_export_roundtrip(raw, np.array(TEXTS), tmp_path)


def test_with_preprocessing_docstring_example():
    vectorizer = keras.layers.TextVectorization(max_tokens=1000, output_sequence_length=32)
    vectorizer.adapt(["a good film", "a bad film", "not good at all"])
    model = text_classifier(
        vectorizer.vocabulary_size(), num_classes=2, sequence_length=32,
        hidden_dim=32, num_layers=1, num_heads=2,
    )
    raw = with_preprocessing(model, vectorizer)
    logits = raw.predict(["a good film", "bad"], verbose=0)
    assert logits.shape == (2, 2)
    np.testing.assert_allclose(raw.predict(np.array(["a good film", "bad"]), verbose=0), logits, atol=1e-6)
