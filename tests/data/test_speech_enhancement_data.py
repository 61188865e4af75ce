"""Speech enhancement data: noise, mixing, and the pipeline on mock spoken digits."""


import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_attention.data.speech_enhancement import mix_at_snr
from keras_attention.data.speech_enhancement import pink_noise
from keras_attention.data.speech_enhancement import speech_enhancement_data
from keras_attention.data.speech_enhancement import white_noise


def _snr(noisy, clean, length):
    noisy, clean = np.float64(noisy), np.float64(clean)
    return 10 * np.log10(np.mean(clean[:length] ** 2) / np.mean((noisy - clean) ** 2))


# --------------------------------------------------------------------------
# mix_at_snr
# --------------------------------------------------------------------------
@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 10.0])
@pytest.mark.parametrize("length", [1000, 600, 37])
def test_mix_at_snr_hits_the_requested_snr_over_the_valid_part(snr_db, length):
    rng = np.random.default_rng(length)
    clean = np.zeros(1000)
    clean[:length] = 0.05 * rng.standard_normal(length)
    noise = pink_noise(rng, 1000) * 3.0  # any noise power
    noisy, target = mix_at_snr(clean, noise, snr_db, length)
    assert noisy.dtype == np.float32 and target.dtype == np.float32 and noisy.shape == (1000,)
    assert abs(_snr(noisy, target, length) - snr_db) < 1e-4
    np.testing.assert_array_equal(target, clean.astype(np.float32))  # quiet: not scaled
    # The noise covers the padding too.
    assert np.all(noisy[length:] != 0)
    # Measured over the whole window instead, a padded clip's SNR is lower.
    if length < 1000:
        assert _snr(noisy, target, 1000) < snr_db - 1.0


def test_mix_at_snr_length_defaults_to_the_window():
    clean = 0.1 * np.sin(np.arange(500) / 3.0)
    noisy, target = mix_at_snr(clean, white_noise(0, 500), 3.0)
    assert abs(_snr(noisy, target, 500) - 3.0) < 1e-4


def test_mix_at_snr_silent_clip_gets_no_noise():
    noisy, target = mix_at_snr(np.zeros(100), white_noise(1, 100), 0.0, 60)
    np.testing.assert_array_equal(noisy, np.zeros(100))
    np.testing.assert_array_equal(target, np.zeros(100))
    # Silent over the valid part only: still no noise, the clip unchanged.
    clean = np.zeros(100)
    clean[80:] = 0.5
    noisy, target = mix_at_snr(clean, white_noise(1, 100), 0.0, 50)
    np.testing.assert_array_equal(noisy, clean.astype(np.float32))


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 10.0])
def test_mix_at_snr_limits_the_peak_and_scales_clean_alike(snr_db):
    rng = np.random.default_rng(7)
    clean = np.clip(0.6 * rng.standard_normal(800), -0.99, 0.99)
    noise = white_noise(rng, 800)
    noisy, target = mix_at_snr(clean, noise, snr_db, 800)
    assert np.max(np.abs(noisy)) <= 1.0
    assert np.max(np.abs(noisy)) == pytest.approx(1.0)  # it was louder: scaled down to the limit
    ratio = target / clean
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-5)
    assert ratio[0] < 1.0
    # The factor is the unscaled mixture's peak.
    gain = np.sqrt(np.mean(clean**2) / (np.mean(noise**2) * 10 ** (snr_db / 10)))
    assert ratio[0] == pytest.approx(1.0 / np.max(np.abs(clean + gain * noise)), rel=1e-5)
    assert abs(_snr(noisy, target, 800) - snr_db) < 1e-4


def test_mix_at_snr_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"`mix_at_snr`: .*Received: clean.shape=\(4,\), noise.shape=\(5,\)"):
        mix_at_snr(np.ones(4), np.ones(5), 0.0)


# --------------------------------------------------------------------------
# Noise
# --------------------------------------------------------------------------
def _spectrum_slope(make, n=1024, trials=200):
    rng = np.random.default_rng(0)
    power = np.mean([np.abs(np.fft.rfft(make(rng, n))) ** 2 for _ in range(trials)], axis=0)
    f = np.arange(1, n // 2)  # no DC, no Nyquist
    return np.polyfit(np.log(f), np.log(power[f]), 1)[0]


def test_pink_noise_has_a_one_over_f_spectrum_and_unit_power():
    assert _spectrum_slope(pink_noise) == pytest.approx(-1.0, abs=0.15)
    assert _spectrum_slope(white_noise) == pytest.approx(0.0, abs=0.15)
    for n in (8000, 1001, 64):
        noise = pink_noise(np.random.default_rng(n), n)
        assert noise.shape == (n,) and np.mean(noise**2) == pytest.approx(1.0, rel=1e-9)
        assert abs(np.mean(noise)) < 1e-9  # the DC bin is zeroed
    np.testing.assert_array_equal(pink_noise(3, 100), pink_noise(np.random.default_rng(3), 100))
    assert not np.array_equal(pink_noise(3, 100), pink_noise(4, 100))


def test_white_noise_is_standard_normal():
    noise = white_noise(np.random.default_rng(0), 200_000)
    assert abs(np.mean(noise)) < 0.01 and np.mean(noise**2) == pytest.approx(1.0, abs=0.01)


# --------------------------------------------------------------------------
# The pipeline on mock spoken digits
# --------------------------------------------------------------------------
SPEAKERS = ("ann", "bob", "cat")
KEYS = [(s, d, i) for s in SPEAKERS for d in range(2) for i in range(3)]  # 6 clips a speaker


def _audio(speaker, digit, index):
    k = SPEAKERS.index(speaker)
    length = 200 + 37 * index + 23 * digit + 11 * k  # 200-308 samples
    loud = 25000 if index == 2 else 3000  # loud clips hit the peak limit
    rng = np.random.default_rng(1000 * k + 10 * digit + index)
    return rng.integers(-loud, loud, length).astype("int64")


def _mock_spoken_digit(self, split, *args, **kwargs):
    assert split == "train"
    order = np.random.default_rng(0).permutation(len(KEYS))  # files come in any order

    def generate():
        for j in order:
            s, d, i = KEYS[j]
            yield {"audio": _audio(s, d, i), "audio/filename": f"{d}_{s}_{i}.wav", "label": d}

    return tf.data.Dataset.from_generator(
        generate,
        output_signature={
            "audio": tf.TensorSpec((None,), tf.int64),
            "audio/filename": tf.TensorSpec((), tf.string),
            "label": tf.TensorSpec((), tf.int64),
        },
    )


def _load(**kwargs):
    with tfds.testing.mock_data(as_dataset_fn=_mock_spoken_digit):
        return speech_enhancement_data(**kwargs)


def _window(key, num_samples):
    audio = _audio(*key)[:num_samples]
    wave = np.zeros(num_samples, np.float32)
    wave[: len(audio)] = audio.astype(np.float32) / 32768.0
    return wave, len(audio)


def _arrays(ds):
    noisy, clean = zip(*[(n.numpy(), c.numpy()) for n, c in ds])
    return np.concatenate(noisy), np.concatenate(clean)


def _unit(rows):
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


KW = dict(num_samples=256, test_speakers=("cat",), mixtures_per_clip=4, batch_size=4, shuffle_buffer=64, seed=3)


def test_shapes_counts_and_speakers():
    data = _load(**KW)
    assert data.num_samples == 256 and data.sample_rate == 8000
    assert data.noise_kinds == ("white", "pink", "babble") and data.test_snr_db == 0.0
    assert data.train_speakers == ["ann", "bob"] and data.test_speakers == ["cat"]
    assert data.num_train == 4 * 12 and data.num_test == 3 * 6
    for spec in data.train.element_spec:
        assert tuple(spec.shape) == (4, 256) and spec.dtype == tf.float32
    for spec in data.test.element_spec:
        assert tuple(spec.shape) == (None, 256) and spec.dtype == tf.float32
    assert data.train.options().autotune.enabled is False
    assert data.test.options().autotune.enabled is False
    noisy, clean = _arrays(data.train)
    assert noisy.shape == (48, 256)  # 12 full batches: every training example
    assert np.all(np.abs(noisy) <= 1.0)
    test_noisy, test_clean = _arrays(data.test)
    assert test_noisy.shape == (18, 256) and np.all(np.abs(test_noisy) <= 1.0)
    assert [len(n) for n, _ in data.test] == [4, 4, 4, 4, 2]  # the remainder is kept
    # Indices name speakers too (in sorted order); one name alone is fine.
    assert _load(**{**KW, "test_speakers": (0, "bob")}).train_speakers == ["cat"]
    assert _load(**{**KW, "test_speakers": "bob"}).test_speakers == ["bob"]


def test_clean_clips_keep_their_speakers_apart():
    data = _load(**KW)
    windows = {key: _window(key, 256)[0] for key in KEYS}
    train_clips = _unit(np.array([windows[k] for k in KEYS if k[0] != "cat"]))
    test_clips = _unit(np.array([windows[k] for k in KEYS if k[0] == "cat"]))
    _, clean = _arrays(data.train)
    # Every training target is a training speaker's clip (perhaps scaled
    # down by the peak limit), never a held-out one.
    assert np.allclose(np.max(_unit(clean) @ train_clips.T, axis=1), 1.0, atol=1e-6)
    assert np.max(_unit(clean) @ test_clips.T) < 0.5
    # Each training clip gives `mixtures_per_clip` examples.
    assert sorted(np.bincount(np.argmax(_unit(clean) @ train_clips.T, axis=1))) == [4] * 12
    _, test_clean = _arrays(data.test)
    assert np.allclose(np.max(_unit(test_clean) @ test_clips.T, axis=1), 1.0, atol=1e-6)


def test_test_mixtures_are_at_exactly_the_test_snr():
    data = _load(**{**KW, "test_snr_db": 2.5})
    noisy, clean = _arrays(data.test)
    # In order: speaker, digit, recording index, then noise kind.
    keys = [k for k in KEYS if k[0] == "cat"]
    scaled = 0
    for row in range(len(noisy)):
        wave, length = _window(keys[row // 3], 256)
        assert abs(_snr(noisy[row], clean[row], length) - 2.5) < 1e-3, row
        factor = np.dot(clean[row], wave) / np.dot(wave, wave)
        np.testing.assert_allclose(clean[row], factor * wave, rtol=1e-5, atol=1e-8)
        assert factor <= 1.0 + 1e-6
        scaled += factor < 0.999
    assert scaled >= 1  # the loud clips were scaled down
    lengths = [_window(k, 256)[1] for k in keys]
    assert min(lengths) < 256 and max(lengths) == 256  # padded and cropped clips both
    # Training SNRs lie in the range (measured over each clip's valid part,
    # which the shuffled data does not give: use full-length clips).
    train_noisy, train_clean = _arrays(_load(**{**KW, "num_samples": 200, "train_snr_db": (4.0, 6.0)}).train)
    snrs = [_snr(n, c, 200) for n, c in zip(train_noisy, train_clean)]
    assert 4.0 - 1e-3 < min(snrs) and max(snrs) < 6.0 + 1e-3 and np.std(snrs) > 0.1


def test_noise_kinds_are_used_as_asked():
    data = _load(**{**KW, "noise_kinds": ("babble",), "mixtures_per_clip": 2})
    assert data.noise_kinds == ("babble",) and data.num_train == 24 and data.num_test == 6
    assert set(data.input_si_sdr) == {"babble", "all"}
    # Babble is made of other clips of the same set: the test noise of
    # speaker cat (SNR and peak scaling undone) lies in the span of cat's
    # other clips, and not in the span of the training clips.
    noisy, clean = _arrays(data.test)
    keys = [k for k in KEYS if k[0] == "cat"]
    windows = np.array([_window(k, 256)[0] for k in keys])
    train_windows = np.array([_window(k, 256)[0] for k in KEYS if k[0] != "cat"])
    for row, key in enumerate(keys):
        noise = np.float64(noisy[row]) - np.float64(clean[row])
        others = np.delete(windows, row, axis=0)
        residual = noise - others.T @ np.linalg.lstsq(others.T, noise, rcond=None)[0]
        assert np.linalg.norm(residual) < 1e-4 * np.linalg.norm(noise), key
        itself = np.linalg.lstsq(train_windows.T, noise, rcond=None)[0]
        assert np.linalg.norm(noise - train_windows.T @ itself) > 0.5 * np.linalg.norm(noise)


def test_determinism():
    first, again, other = _load(**KW), _load(**KW), _load(**{**KW, "seed": 4})
    a, b, c = _arrays(first.train), _arrays(again.train), _arrays(other.train)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(_arrays(first.test)[0], _arrays(again.test)[0])
    assert first.input_si_sdr == again.input_si_sdr

    def rows(arrays):
        return sorted(map(bytes, arrays[0]))

    assert rows(a) != rows(c)  # other mixtures, not just another order
    assert not np.array_equal(_arrays(first.test)[0], _arrays(other.test)[0])
    # The training set is reshuffled every epoch.
    epochs = [np.concatenate([n.numpy() for n, _ in first.train]) for _ in range(2)]
    assert not np.array_equal(*epochs) and rows((epochs[0],)) == rows((epochs[1],))


def test_input_si_sdr_is_the_noisy_test_baseline():
    from keras_attention.models.scale_invariant_sdr import scale_invariant_sdr

    data = _load(**KW)
    assert set(data.input_si_sdr) == {"white", "pink", "babble", "all"}
    noisy, clean = _arrays(data.test)
    scores = np.asarray(scale_invariant_sdr(clean, noisy))
    for j, kind in enumerate(data.noise_kinds):
        assert data.input_si_sdr[kind] == pytest.approx(np.mean(scores[j::3]), abs=1e-4)
    assert data.input_si_sdr["all"] == pytest.approx(np.mean(scores), abs=1e-4)
    assert all(isinstance(v, float) for v in data.input_si_sdr.values())
    # White noise at 0 dB on full-length clips (every mock clip has >= 200
    # samples): the SI-SDR is close to the SNR.
    full = _load(**{**KW, "num_samples": 200, "test_speakers": ("bob", "cat"), "noise_kinds": ("white",)})
    assert full.input_si_sdr["white"] == pytest.approx(0.0, abs=1.0)
    # With padded clips the noise fills the padding too: a lower baseline.
    assert data.input_si_sdr["white"] < full.input_si_sdr["white"] - 0.5


# --------------------------------------------------------------------------
# Bad arguments
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"noise_kinds": ("white", "brown")}, r"`noise_kinds` must be .* \['white', 'pink', 'babble'\]\. Received: noise_kinds=\('white', 'brown'\)"),
        ({"noise_kinds": ()}, r"`noise_kinds` must be a non-empty .*Received: noise_kinds=\(\)"),
        ({"noise_kinds": ("pink", "pink")}, r"`noise_kinds` must be .*distinct.*Received: noise_kinds=\('pink', 'pink'\)"),
        ({"train_snr_db": (10.0, -5.0)}, r"`train_snr_db` must be a \(low, high\) pair .*low <= high\. Received: train_snr_db=\(10\.0, -5\.0\)"),
        ({"train_snr_db": 5.0}, r"`train_snr_db` must be a \(low, high\) pair.*Received: train_snr_db=5\.0"),
        ({"test_snr_db": float("nan")}, r"`test_snr_db` must be a finite number \(dB\)\. Received: test_snr_db=nan"),
        ({"num_samples": 0}, r"`num_samples` must be a positive integer\. Received: num_samples=0"),
        ({"num_samples": 2.5}, r"`num_samples` must be a positive integer\. Received: num_samples=2\.5"),
        ({"batch_size": 0}, r"`batch_size` must be a positive integer\. Received: batch_size=0"),
        ({"mixtures_per_clip": -1}, r"`mixtures_per_clip` must be a positive integer\. Received: mixtures_per_clip=-1"),
        ({"shuffle_buffer": 0}, r"`shuffle_buffer` must be a positive integer\. Received: shuffle_buffer=0"),
        ({"seed": -1}, r"`seed` must be an integer >= 0\. Received: seed=-1"),
        ({"test_speakers": ()}, r"`test_speakers` must be a non-empty sequence .*Received: test_speakers=\(\)"),
    ],
)
def test_bad_arguments_are_named_before_any_data_is_read(kwargs, message, tmp_path):
    reads = []

    def as_dataset(self, *args, **kw):
        reads.append(args)
        return _mock_spoken_digit(self, *args, **kw)

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        with pytest.raises(ValueError, match=r"^`speech_enhancement_data`: " + message):
            speech_enhancement_data(**kwargs)
    assert reads == []
    with pytest.raises(ValueError, match=message):
        speech_enhancement_data(data_dir=str(tmp_path / "absent"), **kwargs)
    assert not (tmp_path / "absent").exists()


@pytest.mark.parametrize(
    "test_speakers, message",
    [
        (("dan",), r"must name speakers among \['ann', 'bob', 'cat'\] \(or their indices 0-2\)\. Received: test_speakers=\('dan',\)"),
        ((3,), r"must name speakers among \['ann', 'bob', 'cat'\].*Received: test_speakers=\(3,\)"),
        (("ann", "bob", 2), r"must leave at least one of the speakers \['ann', 'bob', 'cat'\] for training\. Received: test_speakers=\('ann', 'bob', 2\)"),
    ],
)
def test_bad_speakers_are_named(test_speakers, message):
    with pytest.raises(ValueError, match=r"^`speech_enhancement_data`: `test_speakers` " + message):
        _load(num_samples=64, test_speakers=test_speakers)


def test_missing_data_is_named():
    with pytest.raises(ValueError, match=r"`speech_enhancement_data`: `data_dir` .* does not exist"):
        speech_enhancement_data(data_dir="/nonexistent/tfds")


