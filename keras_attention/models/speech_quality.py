"""Speech quality and intelligibility scores of enhanced speech: STOI and PESQ.

Both wrap the reference implementations of the `pystoi` and `pesq` packages
(`pip install keras-attention-kit[speech]`); they score NumPy waveforms one
example at a time, outside the graph, like `mean_average_precision`.
"""

import warnings

import numpy as np

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_positive_int

PESQ_RATES = {8000: "nb", 16000: "wb"}
"""The sample rates PESQ is defined at, with its mode: narrow-band at
8 kHz, wide-band at 16 kHz."""


def _pairs(where, clean, enhanced):
    clean = np.asarray(clean, dtype=np.float64)
    enhanced = np.asarray(enhanced, dtype=np.float64)
    if clean.ndim == 1 and enhanced.ndim == 1:
        clean, enhanced = clean[None], enhanced[None]
    if clean.ndim != 2 or clean.shape != enhanced.shape:
        raise argument_error(
            where, "enhanced", "must have the shape of clean, (batch, samples) or (samples,)",
            f"clean of shape {clean.shape}, enhanced of shape {enhanced.shape}",
        )
    if not (np.all(np.isfinite(clean)) and np.all(np.isfinite(enhanced))):
        raise argument_error(where, "enhanced", "must hold finite samples (and so must clean)", "NaN or inf")
    return clean, enhanced


def _package(where, module, extra):
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(
            f"`{where}` needs the `{module}` package: pip install {module} "
            f"(or keras-attention-kit[{extra}])"
        ) from None


def short_time_objective_intelligibility(clean, enhanced, sample_rate, extended=False):
    """STOI of each enhanced waveform against its clean one.

    The short-time objective intelligibility measure (`pystoi`'s reference
    implementation): the mean correlation of clean and enhanced one-third
    octave band envelopes over 384 ms segments, after resampling to
    10 kHz and dropping silent frames. It is about 1 for identical signals
    and falls with distortion; it ignores the overall scale.

    Args:
        clean: `(batch, samples)` or `(samples,)` clean waveforms.
        enhanced: waveforms of the same shape.
        sample_rate: int, in Hz.
        extended: bool, the extended STOI (Jensen & Taal, 2016).

    Returns:
        float64 array `(batch,)` of scores; NaN where STOI is undefined:
        fewer than 30 frames (384 ms) of speech in the clean waveform once
        its silent frames are dropped (use `np.nanmean`).

    Example:

    ```python
    scores = short_time_objective_intelligibility(clean, model.predict(noisy), 8000)
    ```

    Reference:
        - [Taal et al., 2011, "An Algorithm for Intelligibility Prediction
          of Time-Frequency Weighted Noisy Speech"](
          https://doi.org/10.1109/TASL.2011.2114881).
    """
    name = "short_time_objective_intelligibility"
    check_positive_int(name, "sample_rate", sample_rate)
    clean, enhanced = _pairs(name, clean, enhanced)
    pystoi = _package(name, "pystoi", "speech")
    scores = []
    for c, e in zip(clean, enhanced):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = float(pystoi.stoi(c, e, sample_rate, extended=bool(extended))) if np.any(c) else float("nan")
        # pystoi warns and returns 1e-5 when fewer than 30 speech frames
        # (384 ms) remain after it drops the silent ones.
        if any("Not enough STFT frames" in str(w.message) for w in caught):
            value = float("nan")
        scores.append(value)
    return np.asarray(scores, dtype=np.float64)


def perceptual_speech_quality(clean, enhanced, sample_rate):
    """PESQ (ITU-T P.862) of each enhanced waveform against its clean one.

    The `pesq` package's reference implementation, narrow-band at 8 kHz and
    wide-band at 16 kHz (`PESQ_RATES`). Scores run from about -0.5 to 4.5
    (4.5: no audible difference). PESQ is undefined where it finds no
    speech (silence in either waveform); those examples give NaN (use
    `np.nanmean`).

    Args:
        clean: `(batch, samples)` or `(samples,)` clean waveforms.
        enhanced: waveforms of the same shape.
        sample_rate: 8000 or 16000.

    Returns:
        float64 array `(batch,)` of MOS-LQO scores (NaN where undefined).

    Example:

    ```python
    scores = perceptual_speech_quality(clean, model.predict(noisy), 8000)
    print(np.nanmean(scores))
    ```

    Reference:
        - ITU-T Recommendation P.862, 2001, "Perceptual evaluation of speech
          quality (PESQ)"; P.862.2, 2005 (wide-band).
    """
    name = "perceptual_speech_quality"
    if sample_rate not in PESQ_RATES:
        raise argument_error(
            name, "sample_rate", f"must be one of {sorted(PESQ_RATES)} (PESQ is defined there only)",
            f"sample_rate={sample_rate!r}",
        )
    clean, enhanced = _pairs(name, clean, enhanced)
    package = _package(name, "pesq", "speech")
    scores = []
    for c, e in zip(clean, enhanced):
        try:
            value = float(package.pesq(sample_rate, c, e, PESQ_RATES[sample_rate], on_error=package.PesqError.RETURN_VALUES))
        except Exception:  # the C code rejects some silent inputs with other errors
            value = float("nan")
        scores.append(value if value > -1.0 else float("nan"))  # -1, -2: error codes
    return np.asarray(scores, dtype=np.float64)
