import numpy as np
import pytest

from model_checks import check_builder_model
from keras_attention.models.video_classifier import compile_video_classifier
from keras_attention.models.video_classifier import video_classifier

TINY = dict(frames=4, image_size=16, num_classes=3, tubelet_size=(2, 4, 4), hidden_dim=16,
            num_layers=1, num_heads=2)


def _clips(batch=4):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (batch, 4, 16, 16, 3)).astype("uint8"), np.array([0, 1, 2, 1])


@pytest.mark.parametrize(
    "attention,kwargs,export",
    [
        ("multi_head", {"mode": "factorized"}, False),
        # Regional spatial attention (windows of 3 of the 16 patches of a
        # frame), linear temporal attention.
        ("regional", {"mode": "factorized", "attention_kwargs": {"window_size": 3},
                      "temporal_attention": "linear", "pooling": "mean"}, False),
        ("multi_head", {"mode": "joint"}, True),
        ("linear", {"mode": "divided", "pooling": "mean"}, False),
    ],
)
def test_builds_trains_saves_exports(attention, kwargs, export, tmp_path):
    model = video_classifier(**TINY, attention=attention, **kwargs)
    compile_video_classifier(model)
    clips, labels = _clips()
    (logits,) = check_builder_model(model, clips, labels, tmp_path, export=export)
    assert logits.shape == (4, 3)
    assert model.input.dtype == "uint8"


def test_layout_of_the_modes():
    factorized = video_classifier(**TINY, temporal_layers=2)
    names = [layer.name for layer in factorized.layers]
    assert "spatial_encoder_0" in names and "temporal_encoder_1" in names
    assert factorized.get_layer("tubelet_embedding").strides == (2, 4, 4)
    mixed = video_classifier(**TINY, attention="regional", attention_kwargs={"window_size": 3},
                             temporal_attention="linear")
    spatial = mixed.get_layer("spatial_encoder_0").self_attention_layer
    temporal = mixed.get_layer("temporal_encoder_0").self_attention_layer
    assert spatial.registry_name == "regional" and spatial.window_size == 3
    assert temporal.registry_name == "linear"
    divided = video_classifier(**TINY, mode="divided", attention="linear")
    attention = divided.get_layer("encoder_0_attention")
    assert type(attention).__name__ == "SpatioTemporalAttention"
    assert attention.mode == "divided" and attention.attention == "linear"


def test_float_inputs_without_rescaling():
    model = video_classifier(**TINY, input_dtype="float32", rescale=None, dropout=0.0)
    clips, _ = _clips(2)
    scaled = clips.astype("float32") / 255
    assert model.input.dtype == "float32"
    logits = np.asarray(model(scaled, training=False))
    assert logits.shape == (2, 3) and np.all(np.isfinite(logits))
    # The same model with the default rescaling on raw values agrees.
    raw = video_classifier(**TINY, input_dtype="float32", dropout=0.0)
    raw.set_weights(model.get_weights())
    np.testing.assert_allclose(np.asarray(raw(clips.astype("float32"), training=False)), logits, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"image_size": 18}, r"video_classifier.*image_size.*divisible by the tubelet's spatial size 4x4.*18"),
        ({"frames": 5}, r"video_classifier.*frames.*divisible.*tubelet_size\[0\]=2.*frames=5"),
        ({"tubelet_size": (2, 4)}, r"video_classifier.*tubelet_size"),
        ({"num_classes": 1}, r"video_classifier.*num_classes.*>= 2"),
        ({"num_heads": 3}, r"video_classifier.*num_heads.*must divide hidden_dim=16"),
        ({"mode": "space_time"}, r"video_classifier.*mode.*one of \['factorized', 'joint', 'divided'\]"),
        ({"pooling": "max"}, r"video_classifier.*pooling"),
        ({"input_dtype": "int32"}, r"video_classifier.*input_dtype"),
        ({"attention": "nope"}, r"video_classifier.*attention.*one of \[.*'multi_head'.*Received: attention='nope'"),
        ({"attention": "nope", "mode": "joint"}, r"video_classifier.*attention.*one of \[.*'linear'"),
        ({"temporal_attention": "nope"}, r"video_classifier.*attention.*Received: attention='nope'"),
        ({"temporal_layers": 2, "mode": "joint"}, r"video_classifier.*temporal_layers.*only used with mode='factorized'"),
        ({"attention_kwargs": [1]}, r"video_classifier.*attention_kwargs.*must be a dict"),
    ],
)
def test_bad_config(kwargs, match):
    arguments = dict(TINY)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        video_classifier(**arguments)


def test_docstring_example():
    model = video_classifier(8, 32, 10, tubelet_size=(2, 8, 8), hidden_dim=32, num_layers=1,
                             num_heads=2, attention="linear")
    compile_video_classifier(model)
    assert model.jit_compile is True
    assert model.predict(np.zeros((2, 8, 32, 32, 3), "uint8"), verbose=0).shape == (2, 10)
