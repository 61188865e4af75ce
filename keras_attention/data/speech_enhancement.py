"""Speech enhancement data: spoken digits mixed with noise at chosen SNRs.

`speech_enhancement_data` reads the real recordings of the Free Spoken Digit
Dataset (`spoken_digit` in tensorflow-datasets, 8 kHz, one `train` split of
files named `digit_speaker_index.wav`) and mixes each clip with generated
noise: white, pink (1/f) or babble (other speakers' digits). An enhancer
learns `noisy -> clean`; `input_si_sdr` gives the test set's SI-SDR before
any enhancement, the baseline an enhancer must beat. Speakers are held out
whole: the test voices are never heard in training, not even as babble.

`white_noise`, `pink_noise` and `mix_at_snr` are the pieces the pipeline
uses, in NumPy.

Example:

>>> import numpy as np
>>> clean = 0.1 * np.sin(np.arange(400) / 5.0)
>>> noisy, clean = mix_at_snr(clean, pink_noise(0, 400), snr_db=5.0, length=400)
>>> snr = 10 * np.log10(np.mean(clean**2) / np.mean((noisy - clean) ** 2))
>>> round(float(snr), 3)
5.0

Reference:
    - [Free Spoken Digit Dataset](
      https://github.com/Jakobovski/free-spoken-digit-dataset).
"""

import dataclasses
import math
import numbers

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_int
from keras_attention.arguments import check_positive_int
from keras_attention.arguments import is_int
from keras_attention.arguments import is_number
from keras_attention.data.feeding import prefetched
from keras_attention.data.prepared import load_prepared

NAME = "speech_enhancement_data"
NOISE_KINDS = ("white", "pink", "babble")
BABBLE_TALKERS = 4
SAMPLE_RATE = 8000


@dataclasses.dataclass
class SpeechEnhancementData:
    """What `speech_enhancement_data` returns.

    Attributes:
        train: `tf.data.Dataset` of `(noisy, clean)`, both float32
            `(batch_size, num_samples)`: shuffled (again every epoch), the
            last partial batch dropped, so every batch has this static shape.
        test: `tf.data.Dataset` of `(noisy, clean)`, float32
            `(None, num_samples)`, in order (speaker, digit, recording index,
            then noise kind in `noise_kinds` order), every example.
        num_samples: int, samples per waveform.
        sample_rate: int (8000).
        noise_kinds: tuple of the noise kinds used.
        test_snr_db: float, the SNR of every test mixture.
        train_speakers: list of the training speakers' names (sorted).
        test_speakers: list of the held-out speakers' names (sorted).
        num_train: int, training examples (before batching).
        num_test: int, test examples.
        input_si_sdr: dict, noise kind -> mean SI-SDR (dB) of the test
            set's noisy inputs against their clean clips, and `"all"` (every
            test example). An enhancer's SI-SDR improvement is its enhanced
            SI-SDR minus this.

    Example:

    >>> import dataclasses
    >>> [f.name for f in dataclasses.fields(SpeechEnhancementData)][:3]
    ['train', 'test', 'num_samples']

    Reference:
        - [Free Spoken Digit Dataset](
          https://github.com/Jakobovski/free-spoken-digit-dataset).
    """

    train: object
    test: object
    num_samples: int
    sample_rate: int
    noise_kinds: tuple
    test_snr_db: float
    train_speakers: list
    test_speakers: list
    num_train: int
    num_test: int
    input_si_sdr: dict


def white_noise(rng, n):
    """White noise: `n` standard normal samples.

    Args:
        rng: a `np.random.Generator` (or a seed for `np.random.default_rng`).
        n: int, number of samples.

    Returns:
        float64 NumPy array `(n,)`, expected power 1.

    Example:

    >>> import numpy as np
    >>> noise = white_noise(np.random.default_rng(0), 100_000)
    >>> round(float(np.mean(noise**2)), 1)
    1.0
    """
    import numpy as np

    return np.random.default_rng(rng).standard_normal(n)


def pink_noise(rng, n):
    """Pink noise: power spectral density proportional to 1/f.

    White noise is shaped in the real FFT domain: bin `f` (f >= 1) is scaled
    by `1 / sqrt(f)` and the DC bin is zeroed; the result is normalised to
    unit power (mean square 1).

    Args:
        rng: a `np.random.Generator` (or a seed for `np.random.default_rng`).
        n: int, number of samples.

    Returns:
        float64 NumPy array `(n,)`, mean square 1 (all zeros if `n < 2`).

    Example:

    >>> import numpy as np
    >>> noise = pink_noise(np.random.default_rng(0), 8000)
    >>> round(float(np.mean(noise**2)), 6), bool(abs(np.mean(noise)) < 1e-9)
    (1.0, True)
    """
    import numpy as np

    spectrum = np.fft.rfft(np.random.default_rng(rng).standard_normal(n))
    scale = 1.0 / np.sqrt(np.maximum(np.arange(spectrum.shape[0]), 1))
    scale[0] = 0.0
    noise = np.fft.irfft(spectrum * scale, n)
    power = np.mean(noise**2) if n else 0.0
    return noise / np.sqrt(power) if power > 0 else np.zeros(n)


def mix_at_snr(clean, noise, snr_db, length=None):
    """Adds `noise` to `clean` at a signal-to-noise ratio, peak-limited.

    The noise gain `g` makes `10 log10(P_clean / P_(g noise)) == snr_db`,
    where `P_clean = mean(clean[:length]**2)` (the clip's valid part, its
    zero padding left out) and `P_noise = mean(noise**2)` over the whole
    window (the noise covers the padding too). Then, only if the mixture's
    peak `max|clean + g noise|` exceeds 1.0, both the mixture and the clean
    clip are divided by that peak, so the noisy input stays in [-1, 1] and
    the SNR is unchanged.

    A silent clip (`P_clean == 0`) or silent noise (`P_noise == 0`) gets
    no noise: the mixture is the clean clip itself (the SNR is undefined).

    Args:
        clean: 1-D array, the clean clip (zero-padded to the window).
        noise: 1-D array of the same length.
        snr_db: float, the SNR in dB.
        length: int, the clip's valid length (`None`: the whole window).

    Returns:
        `(noisy, clean)`: float32 NumPy arrays, the mixture and the clean
        clip, both scaled by the same factor (1 unless the peak exceeded 1).

    Example:

    >>> import numpy as np
    >>> clean = np.array([0.5, -0.5, 0.5, -0.5, 0.0, 0.0])
    >>> noisy, target = mix_at_snr(clean, np.ones(6), snr_db=0.0, length=4)
    >>> noisy.tolist()
    [1.0, 0.0, 1.0, 0.0, 0.5, 0.5]
    >>> noisy, target = mix_at_snr(clean, np.ones(6), snr_db=-6.0, length=4)
    >>> float(np.max(np.abs(noisy))), round(float(clean[0] / target[0]), 4)
    (1.0, 1.4976)
    """
    import numpy as np

    clean = np.asarray(clean, np.float64)
    noise = np.asarray(noise, np.float64)
    if clean.shape != noise.shape or clean.ndim != 1:
        raise ValueError(
            f"`mix_at_snr`: `clean` and `noise` must be 1-D arrays of the same shape. "
            f"Received: clean.shape={clean.shape}, noise.shape={noise.shape}"
        )
    length = clean.shape[0] if length is None else int(length)
    clean_power = float(np.mean(clean[:length] ** 2)) if length > 0 else 0.0
    noise_power = float(np.mean(noise**2)) if noise.size else 0.0
    if clean_power > 0 and noise_power > 0:
        gain = math.sqrt(clean_power / (noise_power * 10.0 ** (float(snr_db) / 10.0)))
        noisy = clean + gain * noise
    else:
        noisy = clean.copy()
    peak = float(np.max(np.abs(noisy))) if noisy.size else 0.0
    if peak > 1.0:
        noisy = noisy / peak
        clean = clean / peak
    return noisy.astype(np.float32), clean.astype(np.float32)


def _babble(rng, pool, lengths, exclude, num_samples):
    """Unit-power sum of `BABBLE_TALKERS` random clips of `pool` (never
    `pool[exclude]`), each at unit power over its valid samples."""
    import numpy as np

    others = pool.shape[0] - 1
    picks = rng.choice(others, BABBLE_TALKERS, replace=others < BABBLE_TALKERS)
    picks = picks + (picks >= exclude)
    total = np.zeros(num_samples)
    for i in picks:
        talker = pool[i].astype(np.float64)
        power = np.mean(talker[: lengths[i]] ** 2) if lengths[i] else 0.0
        if power > 0:
            total += talker / np.sqrt(power)
    power = np.mean(total**2)
    return total / np.sqrt(power) if power > 0 else total


def _noise(kind, rng, pool, lengths, index, num_samples):
    if kind == "white":
        return white_noise(rng, num_samples)
    if kind == "pink":
        return pink_noise(rng, num_samples)
    return _babble(rng, pool, lengths, index, num_samples)


def _check_snr(value):
    return is_number(value) and math.isfinite(value)


def _check_arguments(
    num_samples, test_speakers, noise_kinds, train_snr_db, test_snr_db,
    mixtures_per_clip, batch_size, shuffle_buffer, seed,
):  # fmt: skip
    check_positive_int(NAME, "num_samples", num_samples)
    check_positive_int(NAME, "mixtures_per_clip", mixtures_per_clip)
    check_positive_int(NAME, "batch_size", batch_size)
    check_positive_int(NAME, "shuffle_buffer", shuffle_buffer)
    check_int(NAME, "seed", seed, minimum=0)
    kinds = (noise_kinds,) if isinstance(noise_kinds, str) else noise_kinds
    try:
        kinds = tuple(kinds)
    except TypeError:
        kinds = None
    if not kinds or any(k not in NOISE_KINDS for k in kinds) or len(set(kinds)) != len(kinds):
        raise argument_error(
            NAME,
            "noise_kinds",
            f"must be a non-empty sequence of distinct kinds from {list(NOISE_KINDS)}",
            f"noise_kinds={noise_kinds!r}",
        )
    try:
        low, high = train_snr_db
    except (TypeError, ValueError):
        low = high = None
    if not (_check_snr(low) and _check_snr(high) and low <= high):
        raise argument_error(
            NAME,
            "train_snr_db",
            "must be a (low, high) pair of finite numbers (dB) with low <= high",
            f"train_snr_db={train_snr_db!r}",
        )
    if not _check_snr(test_snr_db):
        raise argument_error(NAME, "test_snr_db", "must be a finite number (dB)", f"test_snr_db={test_snr_db!r}")
    held = (test_speakers,) if isinstance(test_speakers, (str, numbers.Integral)) else test_speakers
    try:
        held = tuple(held)
    except TypeError:
        held = ()
    if not held or not all(isinstance(s, str) or is_int(s) for s in held):
        raise argument_error(
            NAME,
            "test_speakers",
            "must be a non-empty sequence of speaker names or indices",
            f"test_speakers={test_speakers!r}",
        )
    return kinds, (float(low), float(high)), held


def speech_enhancement_data(
    data_dir=None,
    num_samples=8000,
    test_speakers=("theo",),
    noise_kinds=NOISE_KINDS,
    train_snr_db=(-5.0, 10.0),
    test_snr_db=0.0,
    mixtures_per_clip=4,
    batch_size=16,
    shuffle_buffer=4000,
    seed=0,
):
    """Spoken digits (`spoken_digit` in tfds) mixed with noise: `noisy -> clean`.

    Every recording is cast from int16 to float32 (`/ 32768`) and cropped or
    zero-padded to `num_samples` (the start is kept); its valid length is
    `min(len, num_samples)`. Noise covers the whole window:

    - `"white"`: standard normal samples (`white_noise`);
    - `"pink"`: 1/f power spectrum, unit power (`pink_noise`);
    - `"babble"`: 4 random other recordings of the same set (train babble
      from training speakers only, test babble from the test speakers' other
      recordings), each at unit power over its valid samples, summed and
      normalised to unit power.

    Clean and noise are mixed by `mix_at_snr`: the SNR is measured over the
    clip's valid part, and a mixture whose peak exceeds 1.0 is scaled down,
    with its clean clip by the same factor, so noisy inputs stay in [-1, 1].

    Training set: `mixtures_per_clip` mixtures per training clip, each with a
    noise kind drawn uniformly from `noise_kinds` and an SNR uniform in
    `train_snr_db`, generated once at load time from `seed`. Test set: every
    held-out clip mixed once with each kind of `noise_kinds` at exactly
    `test_snr_db` (from the stream `seed + 1`). Both are deterministic: the
    same arguments give the same arrays.

    Every argument is checked before any data is read; nothing is ever
    downloaded (`data_dir` must hold the prepared dataset).

    Args:
        data_dir: tfds data directory (`None`: tfds' default).
        num_samples: int, samples per waveform (8,000 = 1 s at 8 kHz).
        test_speakers: names (or indices into the sorted speaker names) of
            the speakers held out as the test set; every other speaker's
            recordings are the training set. A single name is accepted.
        noise_kinds: distinct kinds among `"white"`, `"pink"`, `"babble"`.
        train_snr_db: `(low, high)`, the training SNR range in dB.
        test_snr_db: float, the SNR of every test mixture in dB.
        mixtures_per_clip: int, training mixtures per training clip.
        batch_size: int.
        shuffle_buffer: int, shuffle buffer of the training set.
        seed: int >= 0, seeds the training mixtures and the shuffle
            (`seed + 1` seeds the test mixtures).

    Returns:
        A `SpeechEnhancementData` with `train` / `test` datasets of
        `(noisy, clean)` float32 waveforms and `input_si_sdr`, the baseline
        SI-SDR of the noisy test inputs per noise kind.

    Example:

    ```python
    data = speech_enhancement_data(data_dir="../shared/tfds")
    noisy, clean = next(iter(data.train))  # (16, 8000) each
    print(data.input_si_sdr)  # {"white": ..., "pink": ..., "babble": ..., "all": ...}
    ```

    Reference:
        - [Free Spoken Digit Dataset](
          https://github.com/Jakobovski/free-spoken-digit-dataset).
    """
    kinds, (low, high), held = _check_arguments(
        num_samples, test_speakers, noise_kinds, train_snr_db, test_snr_db,
        mixtures_per_clip, batch_size, shuffle_buffer, seed,
    )  # fmt: skip
    import numpy as np
    import tensorflow as tf
    import tensorflow_datasets as tfds

    from keras_attention.models.scale_invariant_sdr import scale_invariant_sdr

    source = load_prepared(f"`{NAME}`", "spoken_digit", split="train", data_dir=data_dir)
    clips = []
    for example in tfds.as_numpy(source):
        stem = example["audio/filename"].decode().rsplit(".", 1)[0]
        digit, speaker, index = stem.split("_")
        clips.append(((speaker, int(digit), int(index), stem), example["audio"]))
    clips.sort(key=lambda clip: clip[0])
    speakers = sorted({key[0] for key, _ in clips})

    names = []
    for s in held:
        if is_int(s) and 0 <= s < len(speakers):
            s = speakers[s]
        if s not in speakers:
            raise argument_error(
                NAME,
                "test_speakers",
                f"must name speakers among {speakers} (or their indices 0-{len(speakers) - 1})",
                f"test_speakers={test_speakers!r}",
            )
        names.append(s)
    names = sorted(set(names))
    if len(names) == len(speakers):
        raise argument_error(
            NAME,
            "test_speakers",
            f"must leave at least one of the speakers {speakers} for training",
            f"test_speakers={test_speakers!r}",
        )

    def window(split_names):
        chosen = [audio for (speaker, *_), audio in clips if speaker in split_names]
        waves = np.zeros((len(chosen), num_samples), np.float32)
        lengths = np.zeros(len(chosen), np.int64)
        for i, audio in enumerate(chosen):
            audio = np.asarray(audio)[:num_samples]
            waves[i, : audio.shape[0]] = audio.astype(np.float32) / 32768.0
            lengths[i] = audio.shape[0]
        if "babble" in kinds and len(chosen) < 2:
            raise ValueError(
                f"`{NAME}`: babble noise needs at least 2 recordings in each set; the speakers "
                f"{split_names} have {len(chosen)}"
            )
        return waves, lengths

    train_speakers = [s for s in speakers if s not in names]
    train_clean, train_lengths = window(train_speakers)
    test_clean, test_lengths = window(names)

    def mixtures(waves, lengths, count, draw, rng):
        noisy = np.zeros((waves.shape[0] * count, num_samples), np.float32)
        clean = np.zeros_like(noisy)
        labels = []
        for i in range(waves.shape[0]):
            for m in range(count):
                kind, snr = draw(rng, m)
                noise = _noise(kind, rng, waves, lengths, i, num_samples)
                row = i * count + m
                noisy[row], clean[row] = mix_at_snr(waves[i], noise, snr, lengths[i])
                labels.append(kind)
        return noisy, clean, labels

    train_noisy, train_target, _ = mixtures(
        train_clean,
        train_lengths,
        mixtures_per_clip,
        lambda rng, m: (kinds[int(rng.integers(len(kinds)))], float(rng.uniform(low, high))),
        np.random.default_rng(seed),
    )
    test_noisy, test_target, test_kinds = mixtures(
        test_clean,
        test_lengths,
        len(kinds),
        lambda rng, m: (kinds[m], float(test_snr_db)),
        np.random.default_rng(seed + 1),
    )

    scores = np.asarray(scale_invariant_sdr(test_target, test_noisy), np.float64)
    test_kinds = np.array(test_kinds)
    input_si_sdr = {kind: float(np.mean(scores[test_kinds == kind])) for kind in kinds}
    input_si_sdr["all"] = float(np.mean(scores))

    train = tf.data.Dataset.from_tensor_slices((train_noisy, train_target))
    test = tf.data.Dataset.from_tensor_slices((test_noisy, test_target))
    return SpeechEnhancementData(
        train=train.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size, drop_remainder=True)
        .apply(prefetched),
        test=prefetched(test.batch(batch_size)),
        num_samples=num_samples,
        sample_rate=SAMPLE_RATE,
        noise_kinds=kinds,
        test_snr_db=float(test_snr_db),
        train_speakers=train_speakers,
        test_speakers=names,
        num_train=int(train_noisy.shape[0]),
        num_test=int(test_noisy.shape[0]),
        input_si_sdr=input_si_sdr,
    )
