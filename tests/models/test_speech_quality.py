"""STOI and PESQ wrappers on a generated speech-like signal (a harmonic
complex switched on and off at a syllable rate, under a slow envelope)."""

import sys

import numpy as np
import pytest

from keras_attention.models import perceptual_speech_quality
from keras_attention.models import short_time_objective_intelligibility

RATE = 8000


def _speech(seconds=1.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = rng.uniform(110, 160)
    syllables = (np.sin(2 * np.pi * rng.uniform(2.5, 4.0) * t) > 0).astype(float)
    envelope = syllables * np.hanning(len(t))
    harmonics = sum(np.sin(2 * np.pi * k * pitch * t + rng.uniform(0, 6)) / k for k in range(1, 12))
    return envelope * harmonics


def _noisy(clean, snr_db, seed=1):
    noise = np.random.default_rng(seed).normal(size=clean.shape)
    noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return clean + noise


def test_stoi_is_one_for_clean_speech_and_falls_with_noise():
    clean = np.stack([_speech(seed=0), _speech(seed=1)])
    assert np.all(short_time_objective_intelligibility(clean, clean, RATE) > 0.999)
    scores = [short_time_objective_intelligibility(clean, _noisy(clean, snr), RATE) for snr in (20, 5, -5)]
    assert np.all(scores[0] > scores[1]) and np.all(scores[1] > scores[2]), scores
    # The scale of the estimate does not matter; one example at a time
    # gives the same scores as the batch.
    noisy = _noisy(clean, 5)
    np.testing.assert_allclose(short_time_objective_intelligibility(clean, 3.0 * noisy, RATE), scores[1], atol=1e-6)
    np.testing.assert_allclose(short_time_objective_intelligibility(clean[1], noisy[1], RATE), scores[1][1:], atol=1e-12)
    # Undefined (NaN) for silence, and for speech shorter than 30 frames
    # (384 ms) once the silent frames are dropped.
    assert np.isnan(short_time_objective_intelligibility(np.zeros(8000), noisy[0], RATE)).all()
    short = np.zeros(8000)
    short[:2400] = _speech(seconds=0.3)
    assert np.isnan(short_time_objective_intelligibility(short, short + 0.01, RATE)).all()


def test_pesq_is_near_its_top_for_clean_speech_and_falls_with_noise():
    clean = np.stack([_speech(seed=0), _speech(seed=1)])
    assert np.all(perceptual_speech_quality(clean, clean, RATE) > 4.4)
    scores = [perceptual_speech_quality(clean, _noisy(clean, snr), RATE) for snr in (30, 10, 0)]
    assert np.all(scores[0] > scores[1]) and np.all(scores[1] > scores[2]), scores
    assert np.all((scores[2] > -0.5) & (scores[2] < 4.6))
    # Silence has no utterance to score: NaN, not an error.
    assert np.isnan(perceptual_speech_quality(clean[0], np.zeros(8000), RATE)).all()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: perceptual_speech_quality(np.ones(800), np.ones(800), 22050), r"perceptual_speech_quality.*`sample_rate`.*\[8000, 16000\].*22050"),
        (lambda: short_time_objective_intelligibility(np.ones(800), np.ones(800), 0), r"short_time_objective_intelligibility.*`sample_rate`"),
        (lambda: short_time_objective_intelligibility(np.ones((2, 800)), np.ones((2, 700)), RATE), r"`enhanced` must have the shape of clean.*\(2, 800\).*\(2, 700\)"),
        (lambda: perceptual_speech_quality(np.ones(800), np.full(800, np.nan), RATE), r"perceptual_speech_quality.*finite"),
    ],
)
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pystoi", None)
    with pytest.raises(ImportError, match=r"short_time_objective_intelligibility.*pip install pystoi.*keras-attention-kit\[speech\]"):
        short_time_objective_intelligibility(np.ones(800), np.ones(800), RATE)
