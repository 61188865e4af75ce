import numpy as np
import pytest
import tensorflow as tf

from helpers import shared_tfds
from model_checks import check_builder_model
from keras_attention.data import spoken_digit_data
from keras_attention.data.audio import fix_length
from keras_attention.models import audio_classifier
from keras_attention.models import compile_classifier


def _waves(batch=4, samples=800):
    rng = np.random.default_rng(0)
    t = np.arange(samples) / 8000.0
    waves = np.stack([np.sin(2 * np.pi * (200 + 100 * i) * t) * (i + 1) * 1000 for i in range(batch)])
    return (waves + rng.normal(0, 10, waves.shape)).astype("float32"), np.array([0, 1, 2, 1])


@pytest.mark.parametrize("attention", ["multi_head", "linear", "regional", "sparse"])
def test_builds_trains_saves_exports(attention, tmp_path):
    model = audio_classifier(800, 3, hidden_dim=16, num_layers=1, num_heads=2, num_mel_bins=16, attention=attention)
    compile_classifier(model)
    waves, labels = _waves()
    (logits,) = check_builder_model(model, waves, labels, tmp_path)
    assert logits.shape == (4, 3)


def test_front_end_is_scale_invariant():
    model = audio_classifier(800, 3, hidden_dim=16, num_layers=1, num_heads=2, num_mel_bins=16)
    waves, _ = _waves()
    np.testing.assert_allclose(model.predict(waves, verbose=0), model.predict(waves * 7.5, verbose=0), atol=1e-4)
    assert np.all(np.isfinite(model.predict(np.zeros_like(waves), verbose=0)))


def test_fix_length():
    audio = tf.range(5, dtype=tf.int64)
    assert fix_length(audio, 3).numpy().tolist() == [0, 1, 2]
    assert fix_length(audio, 7).numpy().tolist() == [0, 1, 2, 3, 4, 0, 0]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_samples": 0}, "num_samples"),
        ({"num_classes": 1}, "num_classes"),
        ({"frame_length": 5000}, "frame_length"),
        ({"num_heads": 3}, "num_heads"),
        ({"attention": "nope"}, r"audio_classifier.*one of \["),
    ],
)
def test_bad_config(kwargs, match):
    arguments = dict(num_samples=800, num_classes=3, hidden_dim=16, num_layers=1, num_heads=2)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        audio_classifier(**arguments)


def test_spoken_digit_splits_on_the_prepared_data():
    data_dir = shared_tfds("spoken_digit")
    standard = spoken_digit_data(data_dir, batch_size=50, num_samples=4000)
    test_count = sum(int(x.shape[0]) for x, _ in standard.test)
    assert test_count == 5 * 10 * 5  # recordings 0-4 of each speaker x digit
    assert standard.num_classes == 10 and tuple(standard.train.element_spec[0].shape) == (50, 4000)
    speakers = spoken_digit_data(data_dir, target="speaker", batch_size=50, num_samples=4000)
    assert speakers.num_classes == len(speakers.label_names) == 5
    fold = spoken_digit_data(data_dir, split="leave_one_speaker_out", test_speaker=0, batch_size=50, num_samples=4000)
    assert sum(int(x.shape[0]) for x, _ in fold.test) == 500
    with pytest.raises(ValueError, match="test_speaker"):
        spoken_digit_data(data_dir, split="leave_one_speaker_out", test_speaker="nobody")
    with pytest.raises(ValueError, match="digit task"):
        spoken_digit_data(data_dir, target="speaker", split="leave_one_speaker_out", test_speaker=0)


def test_conv_subsampling_shortens_the_frames():
    import keras as _keras

    from keras_attention.models import audio_classifier as build

    model = build(4000, 3, num_mel_bins=16, hidden_dim=16, num_layers=1, num_heads=2, subsampling=2)
    # 4000 samples at 8 kHz, 10 ms hops: 51 mel frames -> 26 after one stride-2 conv.
    assert model.get_layer("position_embedding").output.shape[1] == 26
    assert model.get_layer("subsampling_conv_0").output.shape[1:3] == (26, 8)
    out = model(_keras.random.normal((2, 4000)))
    assert tuple(out.shape) == (2, 3)
    with pytest.raises(ValueError, match="subsampling"):
        build(4000, 3, subsampling=3)
