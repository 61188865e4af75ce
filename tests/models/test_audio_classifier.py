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


@pytest.mark.parametrize("normalization", ["band", "peak"])
def test_front_end_matches_numpy(normalization):
    import keras

    from keras_attention.models import audio_frontend

    waves, _ = _waves()
    features, _ = audio_frontend.log_mel_features(
        tf.constant(waves), sample_rate=8000, num_mel_bins=16, frame_length=200, frame_step=80,
        fft_length=256, normalization=normalization,
    )
    peak = np.abs(waves).max(axis=1, keepdims=True)
    mel = keras.layers.MelSpectrogram(
        fft_length=256, sequence_stride=80, sequence_length=200, num_mel_bins=16,
        sampling_rate=8000, power_to_db=False,
    )(waves / peak)
    db = 10 * np.log10(np.maximum(np.transpose(keras.ops.convert_to_numpy(mel), (0, 2, 1)), 1e-10))
    floor = db.max(axis=(1, 2), keepdims=True) - 80.0
    db = np.maximum(db, floor)
    if normalization == "peak":
        expected = (db - floor) / 20.0  # the floor is 0, one unit per 20 dB
        assert expected.min() >= 0.0 and expected.max() == pytest.approx(4.0)
    else:
        expected = (db - db.mean(axis=1, keepdims=True)) / np.sqrt(db.var(axis=1, keepdims=True) + 1.0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(features), expected, atol=2e-4)


def test_peak_normalization_ignores_samples_past_the_lengths():
    from keras_attention.models import audio_frontend

    waves, _ = _waves()
    lengths = np.array([800, 500, 300, 650])
    noisy = waves.copy()
    for b, n in enumerate(lengths):
        noisy[b, n:] = np.random.default_rng(b).normal(0, 5000, 800 - n)
    arguments = dict(sample_rate=8000, num_mel_bins=16, frame_length=200, frame_step=80, fft_length=256,
                     lengths=tf.constant(lengths), normalization="peak")
    clean, frames = audio_frontend.log_mel_features(tf.constant(waves), **arguments)
    dirty, _ = audio_frontend.log_mel_features(tf.constant(noisy), **arguments)
    np.testing.assert_allclose(clean.numpy(), dirty.numpy(), atol=1e-4)
    for b, n in enumerate(frames.numpy()):
        assert np.all(clean.numpy()[b, n:] == 0.0) and clean.numpy()[b, :n].max() == pytest.approx(4.0)


def test_peak_normalization_speed_perturbation_and_frequency_warp_train_and_round_trip(tmp_path):
    model = audio_classifier(800, 3, hidden_dim=16, num_layers=1, num_heads=2, num_mel_bins=16,
                             normalization="peak", speed_perturbation=0.1, augmentation=True, frequency_warp=0.15)
    assert model.get_layer("speed_perturbation").max_change == 0.1
    assert model.get_layer("frequency_warp").max_warp == 0.15
    assert not any(layer.name == "frequency_warp" for layer in audio_classifier(800, 3, hidden_dim=16).layers)
    spec_augment = model.get_layer("spec_augment")
    assert (spec_augment.num_freq_masks, spec_augment.max_freq_mask) == (1, 1)  # 16 bins // 16
    wider = audio_classifier(800, 3, hidden_dim=16, num_layers=1, num_heads=2, num_mel_bins=16,
                             augmentation=True, num_freq_masks=2, max_freq_mask=5)
    spec_augment = wider.get_layer("spec_augment")
    assert (spec_augment.num_freq_masks, spec_augment.max_freq_mask) == (2, 5)
    compile_classifier(model)
    waves, labels = _waves()
    (logits,) = check_builder_model(model, waves, labels, tmp_path)
    assert logits.shape == (4, 3)


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
        ({"normalization": "global"}, r"audio_classifier.*normalization.*'band', 'peak'"),
        ({"speed_perturbation": 0.9}, r"SpeedPerturbation: `max_change`"),
        ({"frequency_warp": -0.2}, r"FrequencyWarp: `max_warp`.*max_warp=-0.2"),
        ({"num_freq_masks": -1}, r"audio_classifier.*num_freq_masks.*int >= 0.*num_freq_masks=-1"),
        ({"max_freq_mask": 1.5}, r"audio_classifier.*max_freq_mask.*int >= 0.*max_freq_mask=1.5"),
        ({"max_freq_mask": 65}, r"audio_classifier.*max_freq_mask.*at most num_mel_bins=64.*max_freq_mask=65"),
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
