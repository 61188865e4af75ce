"""`speech_recognizer`: raw waveforms -> per-frame CTC logits with any attention.

Also here: the CTC loss (`CTCLoss`, `ctc_loss`), greedy CTC decoding
(`ctc_greedy_decode`, `transcribe`), the error rates (`word_error_rate`,
`character_error_rate`, from `edit_distance`) and
`compile_speech_recognizer`. The character vocabulary is
`keras_attention.data.speech.CharacterVocabulary`.
"""

import keras
import numpy as np
from keras import ops

from keras_attention.arguments import check_choice
from keras_attention.arguments import check_heads
from keras_attention.arguments import check_positive_int
from keras_attention.arguments import check_rate
from keras_attention.layers.embeddings.position_embedding import PositionEmbedding
from keras_attention.layers.preprocessing.spec_augment import SpecAugment
from keras_attention.layers.regularization.dropout import Dropout
from keras_attention.models import audio_frontend
from keras_attention.models import common

BUILDER = "speech_recognizer"
SUBSAMPLING = (2, 4)


def speech_recognizer(
    num_samples,
    vocabulary_size,
    sample_rate=16000,
    num_mel_bins=80,
    frame_length=None,
    frame_step=None,
    subsampling=4,
    conv_channels=None,
    hidden_dim=144,
    num_layers=4,
    num_heads=4,
    intermediate_dim=None,
    dropout=0.1,
    attention="multi_head",
    attention_kwargs=None,
    input_lengths=False,
    augmentation=False,
    name=BUILDER,
):
    """A CTC speech recogniser: raw waveforms in, per-frame logits out.

    The front end is inside the model (as in `audio_classifier`): each
    waveform is divided by its peak amplitude, turned into a log-mel
    spectrogram (`keras.layers.MelSpectrogram`, decibels floored 80 dB
    below the example's peak) and normalised per mel band over time, each
    example on its own (see `audio_frontend.log_mel_features`). Two
    (`subsampling=4`) or one (`subsampling=2`) stride-2 3x3 `Conv2D` + GELU
    over (time, mel) shorten the frame sequence; the flattened channels are projected to
    `hidden_dim`, learned positions are added, `num_layers` pre-norm
    transformer blocks with the chosen attention variant encode the frames,
    and a `Dense` layer gives logits over `vocabulary_size + 1` classes per
    frame: index 0 is the CTC blank, index `i >= 1` character `i` of the
    vocabulary (see `keras_attention.data.speech.CharacterVocabulary`).

    With `input_lengths=True` the model also takes each waveform's number of
    valid samples. A mel frame counts as valid when its whole window lies
    within them (see `audio_frontend.valid_frames`; even an unpadded
    waveform loses the last frame or two, whose windows run past its end),
    and an output frame when its convolutions read valid mel frames first.
    The peak, the decibel floor and the normalisation statistics skip
    everything else, the padded mel frames are zeros, the attention never
    reads the padded output frames (Keras padding mask), and these come out
    as a certain blank (logit 0 for the blank, -1e4 for the rest): the
    valid logits do not depend on what follows the valid samples,
    `CTCLoss` over all frames is the loss over the valid ones and decoding
    ignores the rest.

    Args:
        num_samples: int, samples per waveform (pad or crop to it; see
            `keras_attention.data.speech.speech_recognition_data`).
        vocabulary_size: int, the number of characters (without the blank).
        sample_rate: int, in Hz.
        num_mel_bins: int, mel bands.
        frame_length: int, STFT window in samples. Defaults to 25 ms.
        frame_step: int, hop in samples. Defaults to 10 ms.
        subsampling: `2` or `4`, the time reduction of the convolutions
            (with 10 ms hops, 4 gives 40 ms output frames).
        conv_channels: int, channels of the convolutions. Defaults to
            `hidden_dim`.
        hidden_dim, num_layers, num_heads, intermediate_dim, dropout: the
            encoder's sizes (`intermediate_dim` defaults to `4 *
            hidden_dim`).
        attention, attention_kwargs: the attention variant (see
            `keras_attention.layers.available()`); length-dependent
            arguments default from the number of output frames.
        input_lengths: bool; the inputs are then `[waveform, length]` with
            `length` int32 `(batch,)`, the valid samples of each waveform.
        augmentation: bool, `SpecAugment` time and frequency masks on the
            normalised features in training (no time shift).
        name: model name.

    Returns:
        An uncompiled functional `keras.Model` mapping float32 `(batch,
        num_samples)` waveforms (and, with `input_lengths`, int32 `(batch,)`
        lengths) to `(batch, frames, vocabulary_size + 1)` logits, `frames`
        being `ceil((1 + num_samples // frame_step) / subsampling)` (see
        `output_frames`).

    Example:

    >>> from keras_attention.data import CharacterVocabulary
    >>> vocabulary = CharacterVocabulary()
    >>> model = speech_recognizer(16000, vocabulary.size, hidden_dim=32,
    ...                           num_layers=1, num_heads=2, attention="linear")
    >>> model = compile_speech_recognizer(model)
    >>> model.output_shape
    (None, 26, 29)
    >>> # model.fit(waves, labels)  # labels: int (batch, L), 0-padded char ids
    >>> # texts = transcribe(model, waves, vocabulary)

    Reference:
        - [Graves et al., 2006, "Connectionist Temporal Classification"](
          https://www.cs.toronto.edu/~graves/icml_2006.pdf).
        - [Gulati et al., 2020, "Conformer"](https://arxiv.org/abs/2005.08100)
          (convolutional subsampling of log-mel frames).
    """
    frame_length, frame_step, fft_length, mel_frames = audio_frontend.frame_arguments(
        BUILDER, num_samples, sample_rate, num_mel_bins, frame_length, frame_step
    )
    check_positive_int(BUILDER, "vocabulary_size", vocabulary_size)
    check_choice(BUILDER, "subsampling", subsampling, SUBSAMPLING)
    check_positive_int(BUILDER, "conv_channels", conv_channels, allow_none=True)
    check_heads(BUILDER, hidden_dim, num_heads)
    check_rate(BUILDER, "dropout", dropout)
    strides = (2,) * (subsampling.bit_length() - 1)
    frames = output_frames(num_samples, frame_step, subsampling)

    waves = keras.Input((num_samples,), name="waveform")
    inputs = waves
    lengths = frame_lengths = None
    if input_lengths:
        lengths = keras.Input((), dtype="int32", name="waveform_length")
        inputs = [waves, lengths]
    x, mel_lengths = audio_frontend.log_mel_features(
        waves,
        sample_rate=sample_rate,
        num_mel_bins=num_mel_bins,
        frame_length=frame_length,
        frame_step=frame_step,
        fft_length=fft_length,
        lengths=lengths,
    )
    if input_lengths:
        frame_lengths = audio_frontend.strided_lengths(mel_lengths, strides, frames)
    if augmentation:
        x = SpecAugment(
            max_time_shift=0,
            max_time_mask=max(1, mel_frames // 20),
            max_freq_mask=max(1, num_mel_bins // 8),
            num_time_masks=2,
            name="spec_augment",
        )(x)
    x = audio_frontend.conv_subsampling(x, subsampling, conv_channels or hidden_dim)
    x = keras.layers.Dense(hidden_dim, name="frame_embedding")(x)
    x = x + PositionEmbedding(frames, name="position_embedding")(x)
    x = Dropout(dropout, name="embedding_dropout")(x)
    if input_lengths:
        x = audio_frontend.LengthMask(name="frame_mask")([x, frame_lengths])
    x = common.encoder_stack(
        x,
        builder=BUILDER,
        num_layers=num_layers,
        num_heads=num_heads,
        intermediate_dim=intermediate_dim or 4 * hidden_dim,
        attention=attention,
        attention_kwargs=attention_kwargs,
        dropout=dropout,
        sequence_length=frames,
    )
    x = Dropout(dropout, name="head_dropout")(x)
    logits = keras.layers.Dense(vocabulary_size + 1, name="logits")(x)
    if input_lengths:
        logits = audio_frontend.LengthMask(fill="blank", name="blank_padding")([logits, frame_lengths])
    return keras.Model(inputs, logits, name=name)


def output_frames(num_samples, frame_step, subsampling):
    """The number of logit frames `speech_recognizer` gives a waveform.

    Args:
        num_samples: int, the waveform's samples.
        frame_step: int, the STFT hop (the builder's default is
            `int(0.010 * sample_rate)`).
        subsampling: int, the builder's `subsampling`.

    Returns:
        int, `ceil((1 + num_samples // frame_step) / subsampling)`.
    """
    return -(-(1 + num_samples // frame_step) // subsampling)


def ctc_loss(labels, logits, logit_lengths=None):
    """Per-example CTC negative log-likelihood; XLA-compatible.

    Args:
        labels: int `(batch, L)` label ids, left-aligned, padded with 0 (the
            blank, never a label); the label length is the number of
            non-zero ids.
        logits: `(batch, T, classes)` unnormalised scores, class 0 = blank.
        logit_lengths: optional int `(batch,)` valid frames per example.
            Defaults to all `T` frames.

    Returns:
        float32 `(batch,)` losses.
    """
    labels = ops.cast(labels, "int32")
    logits = ops.cast(logits, "float32")
    label_lengths = ops.sum(ops.cast(ops.not_equal(labels, 0), "int32"), axis=-1)
    if logit_lengths is None:
        logit_lengths = ops.full((ops.shape(logits)[0],), ops.shape(logits)[1], "int32")
    else:
        logit_lengths = ops.cast(logit_lengths, "int32")
    return ops.ctc_loss(labels, logits, label_lengths, logit_lengths, mask_index=0)


@keras.saving.register_keras_serializable(package="keras_attention")
class CTCLoss(keras.losses.Loss):
    """CTC loss over all frames for `model.compile(loss=...)`.

    `y_true` is int `(batch, L)` label ids padded with 0 (the blank), the
    label length being the number of non-zero ids; `y_pred` is `(batch, T,
    classes)` logits with class 0 the blank. Every frame counts: a model
    that pads (like `speech_recognizer(..., input_lengths=True)`) marks its
    padded frames as a certain blank, which leaves the loss of the valid
    frames unchanged. Compiles with `jit_compile=True`.

    Args:
        reduction: as in `keras.losses.Loss` (default: the batch mean of the
            per-utterance negative log-likelihoods).
        name: loss name.
        dtype: the loss's dtype.

    Example:

    ```python
    model.compile(optimizer="adam", loss=CTCLoss(), jit_compile=True)
    ```
    """

    def __init__(self, reduction="sum_over_batch_size", name="ctc_loss", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)

    def call(self, y_true, y_pred):
        return ctc_loss(y_true, y_pred)

    def get_config(self):
        return {"reduction": self.reduction, "name": self.name, "dtype": self.dtype}


def ctc_greedy_decode(logits, logit_lengths=None, blank_index=0):
    """Best-path CTC decoding: argmax per frame, merge repeats, drop blanks.

    Args:
        logits: `(batch, T, classes)` (or `(T, classes)`) scores or
            probabilities (NumPy or tensors).
        logit_lengths: optional int `(batch,)` valid frames per example.
        blank_index: int, the blank class.

    Returns:
        A list (one per example) of lists of label ids; for a 2-D input, a
        single list.

    Example:

    >>> logits = np.eye(3)[[1, 1, 0, 1, 2, 2, 0]][None]  # frames: a a _ a b b _
    >>> ctc_greedy_decode(logits)
    [[1, 1, 2]]
    """
    logits = np.asarray(keras.ops.convert_to_numpy(logits))
    if logits.ndim == 2:
        return ctc_greedy_decode(logits[None], logit_lengths, blank_index)[0]
    if logits.ndim != 3:
        raise ValueError(
            f"`ctc_greedy_decode`: `logits` must have rank 2 or 3. Received: logits.shape={logits.shape}"
        )
    best = np.argmax(logits, axis=-1)
    if logit_lengths is None:
        logit_lengths = [best.shape[1]] * best.shape[0]
    logit_lengths = np.asarray(keras.ops.convert_to_numpy(logit_lengths)).reshape(-1)
    decoded = []
    for path, length in zip(best, logit_lengths):
        path = path[: int(length)]
        keep = np.ones(len(path), bool)
        keep[1:] = path[1:] != path[:-1]
        decoded.append([int(i) for i in path[keep] if i != blank_index])
    return decoded


def transcribe(model, inputs, vocabulary, batch_size=32):
    """Greedy transcripts of waveforms by a `speech_recognizer` model.

    Args:
        model: the trained model.
        inputs: its inputs (waveforms, or `[waveforms, lengths]`), or a
            `tf.data.Dataset` of them.
        vocabulary: the `CharacterVocabulary` of the labels.
        batch_size: int, for `model.predict`.

    Returns:
        A list of strings.
    """
    logits = model.predict(inputs, batch_size=batch_size, verbose=0)
    return [vocabulary.decode(ids) for ids in ctc_greedy_decode(logits)]


def edit_distance(reference, hypothesis):
    """Levenshtein distance between two sequences (unit-cost substitutions,
    insertions and deletions).

    Example:

    >>> edit_distance("kitten", "sitting")
    3
    """
    reference, hypothesis = list(reference), list(hypothesis)
    previous = list(range(len(hypothesis) + 1))
    for i, r in enumerate(reference, 1):
        current = [i]
        for j, h in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


def _pairs(function, references, hypotheses):
    if isinstance(references, str):
        references = [references]
    if isinstance(hypotheses, str):
        hypotheses = [hypotheses]
    references, hypotheses = list(references), list(hypotheses)
    if len(references) != len(hypotheses):
        raise ValueError(
            f"`{function}`: `references` and `hypotheses` must have the same "
            f"length. Received: {len(references)} references and "
            f"{len(hypotheses)} hypotheses"
        )
    return references, hypotheses


def _error_rate(function, references, hypotheses, split):
    references, hypotheses = _pairs(function, references, hypotheses)
    edits = total = 0
    for reference, hypothesis in zip(references, hypotheses):
        reference, hypothesis = split(reference), split(hypothesis)
        edits += edit_distance(reference, hypothesis)
        total += len(reference)
    if total == 0:
        raise ValueError(f"`{function}`: the references are empty (nothing to compare to)")
    return edits / total


def word_error_rate(references, hypotheses):
    """Corpus word error rate: word edits / reference words.

    The words are the whitespace-separated tokens (compared exactly, case
    included); the edits are the minimum substitutions, deletions and
    insertions, summed over the pairs, divided by the total number of
    reference words (so it can exceed 1).

    Args:
        references: a string or a list of strings.
        hypotheses: a string or a list of strings, as many.

    Returns:
        float.

    Example:

    >>> word_error_rate(["the cat sat"], ["the bat sat down"])  # 1 sub + 1 ins
    0.6666666666666666
    """
    return _error_rate("word_error_rate", references, hypotheses, str.split)


def character_error_rate(references, hypotheses):
    """Corpus character error rate: character edits / reference characters.

    Whitespace runs count as one space and leading / trailing whitespace is
    ignored; otherwise characters are compared exactly (spaces included).

    Args:
        references: a string or a list of strings.
        hypotheses: a string or a list of strings, as many.

    Returns:
        float.

    Example:

    >>> character_error_rate("abcd", "abd")  # 1 deletion / 4
    0.25
    """
    return _error_rate("character_error_rate", references, hypotheses, lambda s: " ".join(s.split()))


def compile_speech_recognizer(model, learning_rate=1e-3, **kwargs):
    """Compiles a CTC model: `CTCLoss`, AdamW, XLA (`jit_compile=True`).

    Args:
        model: a model returning per-frame logits with the blank at index 0.
        learning_rate: peak learning rate.
        **kwargs: passed to `keras_attention.models.compile_model`
            (`warmup_steps`, `decay_steps`, `weight_decay`, `clipnorm`, ...).

    Returns:
        The compiled model.
    """
    return common.compile_model(model, loss=CTCLoss(), learning_rate=learning_rate, **kwargs)


def __getattr__(name):
    # `CharacterVocabulary` lives with the speech pipeline; it was reachable
    # here too, and stays so without importing the pipelines (and
    # tensorflow-datasets) with the models.
    if name == "CharacterVocabulary":
        from keras_attention.data.speech import CharacterVocabulary

        return CharacterVocabulary
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
