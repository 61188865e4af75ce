import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from model_checks import check_builder_model
from keras_attention.models import compile_language_model
from keras_attention.models import export_generator
from keras_attention.models import generate
from keras_attention.models import language_model
from keras_attention.models.language_model import TokenAccuracy

VOCABULARY, LENGTH = 40, 12


def _tokens(batch=4, length=LENGTH + 1, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, VOCABULARY, (batch, length)).astype("int32")
    tokens[1, 7:] = 0
    return tokens


def _model(attention="multi_head", **kwargs):
    kwargs = {"hidden_dim": 16, "num_layers": 2, "num_heads": 2, "dropout": 0.0, **kwargs}
    return language_model(VOCABULARY, LENGTH, attention=attention, **kwargs)


def reference_greedy(model, prompt, max_new_tokens):
    """Greedy decoding written out: the full forward pass per new token."""
    rows = []
    for p in prompt:
        seq = list(p[p != 0])
        while len(seq) < prompt.shape[1] + max_new_tokens:
            x = np.zeros((1, LENGTH), "int32")
            x[0, : len(seq)] = seq
            logits = model.predict(x, verbose=0)
            seq.append(int(np.argmax(logits[0, len(seq) - 1])))
        rows.append(seq)
    return np.array(rows)


@pytest.mark.parametrize("attention", ["multi_head", "linear", "regional", "dynamic"])
def test_builds_trains_saves_exports(attention, tmp_path):
    model = _model(attention)
    compile_language_model(model)
    tokens = _tokens()
    (logits,) = check_builder_model(model, tokens[:, :-1], tokens[:, 1:], tmp_path)
    assert logits.shape == (4, LENGTH, VOCABULARY)


def test_causal_logits_and_padding_left_out_of_the_loss():
    model = _model()
    tokens = _tokens()[:, :-1]
    changed = tokens.copy()
    changed[:, 6:] = (changed[:, 6:] % (VOCABULARY - 1)) + 1
    a, b = model.predict(tokens, verbose=0), model.predict(changed, verbose=0)
    np.testing.assert_allclose(a[:, :6], b[:, :6], atol=1e-5)
    assert np.abs(a[:, 6:] - b[:, 6:]).max() > 1e-4
    compile_language_model(model)
    targets = _tokens()[:, 1:]
    padded = targets.copy()
    padded[:, 8:] = 0
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    per_token = keras.ops.convert_to_numpy(loss(padded, a))
    real = padded != 0
    got = model.evaluate(tokens, padded, verbose=0, return_dict=True)
    np.testing.assert_allclose(got["loss"], per_token[real].mean(), rtol=1e-4)
    np.testing.assert_allclose(
        got["accuracy"], np.mean(np.argmax(a, -1)[real] == padded[real]), atol=1e-6
    )


def test_token_accuracy_hand_computed():
    metric = TokenAccuracy()
    y_true = np.array([[3, 1, 0, 0], [2, 2, 2, 0]])
    y_pred = np.eye(4)[[[3, 2, 1, 1], [2, 0, 2, 3]]]  # right: 1 of 2, 2 of 3
    metric.update_state(y_true, y_pred)
    np.testing.assert_allclose(float(metric.result()), 3 / 5)
    metric.update_state(y_true, y_pred, sample_weight=np.array([[1, 1, 1, 1], [0, 0, 0, 0]]))
    np.testing.assert_allclose(float(metric.result()), 4 / 7)
    assert TokenAccuracy.from_config(metric.get_config()).ignore_class == 0


@pytest.mark.parametrize("attention", ["multi_head", "linear", "dynamic"])
def test_greedy_generation_is_the_argmax_of_the_full_forward(attention):
    model = _model(attention, attention_kwargs={"num_key_value_heads": 1} if attention == "multi_head" else None)
    prompt = np.array([[5, 6, 7, 0], [8, 9, 10, 11]], "int32")  # ragged, right-padded
    cached = generate(model, prompt, 8)
    assert cached.shape == (2, 12) and cached.dtype == np.int32
    np.testing.assert_array_equal(cached, reference_greedy(model, prompt, 8))
    np.testing.assert_array_equal(generate(model, prompt, 8, use_cache=False), cached)


def test_samplers_seeds_and_end_token():
    model = _model()
    prompt = np.array([[5, 6, 7], [8, 9, 10]], "int32")
    greedy = generate(model, prompt, 6)
    np.testing.assert_array_equal(generate(model, prompt, 6, sampler="top_k", top_k=1, seed=0), greedy)
    np.testing.assert_array_equal(generate(model, prompt, 6, sampler="top_p", top_p=1e-7, seed=0), greedy)
    a = generate(model, prompt, 6, sampler="top_p", top_p=0.95, temperature=2.0, seed=1)
    b = generate(model, prompt, 6, sampler="top_p", top_p=0.95, temperature=2.0, seed=1)
    c = generate(model, prompt, 6, sampler="top_p", top_p=0.95, temperature=2.0, seed=2)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    np.testing.assert_array_equal(a[:, :3], prompt)
    end = int(greedy[0, 4])
    stopped = generate(model, prompt, 6, end_token_id=end)
    cut = list(greedy[0, 3:]).index(end) + 3
    np.testing.assert_array_equal(stopped[0, : cut + 1], greedy[0, : cut + 1])
    assert not stopped[0, cut + 1 :].any()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"vocabulary_size": 0}, "vocabulary_size"),
        ({"attention": "nope"}, r"language_model.*attention.*one of \[.*multi_head"),
        ({"num_heads": 3}, "num_heads"),
        ({"dropout": 1.0}, "dropout"),
        ({"position": "rotary"}, "position"),
        ({"attention_kwargs": [1]}, "attention_kwargs"),
        ({"attention": "low_rank"}, r"language_model.*attention.*must support causal.*use_causal_mask"),
    ],
)
def test_bad_config_errors(kwargs, match):
    arguments = dict(vocabulary_size=VOCABULARY, sequence_length=LENGTH, hidden_dim=16, num_layers=1, num_heads=2)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        language_model(**arguments)


def test_generate_errors():
    model = _model(num_layers=1)
    prompt = np.array([[5, 6, 7]], "int32")
    with pytest.raises(ValueError, match=r"max_new_tokens.*at most sequence_length \+ 1 = 13"):
        generate(model, prompt, 11)
    with pytest.raises(ValueError, match="prompt_ids.*shape"):
        generate(model, np.array([5, 6]), 2)
    with pytest.raises(ValueError, match="sampler"):
        generate(model, prompt, 2, sampler="beam")
    regional = _model("regional", num_layers=1, attention_kwargs={"window_size": 4})
    with pytest.raises(ValueError, match=r"'regional'.*use_cache=False|'regional'.*without a cache"):
        generate(regional, prompt, 2)
    ids = generate(regional, prompt, 2, use_cache=False)
    np.testing.assert_array_equal(ids, reference_greedy(regional, prompt, 2))
    with pytest.raises(ValueError, match="no layer 'embedding'"):
        generate(keras.Sequential([keras.layers.Dense(2)]), prompt, 2)


_SERVE = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf

    loaded = tf.saved_model.load(sys.argv[1])
    out = loaded.serve(tf.constant(np.load(sys.argv[2])))
    np.save(sys.argv[3], out.numpy())
    assert "keras_attention" not in sys.modules
    """
)


def test_generation_served_from_a_savedmodel(tmp_path):
    model = _model()
    prompt = np.array([[5, 6, 7, 0], [8, 9, 10, 11], [3, 0, 0, 0]], "int32")
    expected = generate(model, prompt, 5, end_token_id=9)
    export_generator(model, str(tmp_path / "generator"), prompt_length=4, max_new_tokens=5, end_token_id=9)
    np.save(tmp_path / "prompt.npy", prompt)
    result = subprocess.run(
        [sys.executable, "-c", _SERVE, str(tmp_path / "generator"), str(tmp_path / "prompt.npy"), str(tmp_path / "out.npy")],
        capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)


