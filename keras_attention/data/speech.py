"""Speech recognition pipelines over tensorflow-datasets.

`speech_recognition_data("librispeech", data_dir=...)` reads a tfds speech
dataset with a `"speech"` feature (int16 waveform) and a `"text"` feature
(the transcript) and returns batched `(waveform, character ids)` datasets
with static shapes (XLA wants them): waveforms scaled to `[-1, 1]` and
zero-padded or cropped to `num_samples`, transcripts normalised and encoded
with a `CharacterVocabulary` (lowercase letters, apostrophe and space by
default) and zero-padded to `max_label_length`. Id 0 is never a character:
it is the padding of the labels and the CTC blank of
`keras_attention.models.speech_recognizer`.
"""

import dataclasses

import numpy as np

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_positive_int
from keras_attention.data.feeding import prefetched
from keras_attention.data.prepared import load_prepared
from keras_attention.data.prepared import prepared_builder

DEFAULT_CHARACTERS = "abcdefghijklmnopqrstuvwxyz' "


class CharacterVocabulary:
    """Maps transcripts to character ids and back; id 0 is blank / padding.

    Text is normalised before encoding: lowercased (with `lowercase=True`),
    every whitespace character read as a space, characters outside the
    vocabulary dropped, runs of spaces collapsed to one and leading and
    trailing spaces removed. Character `i` of `characters` gets id `i + 1`.
    `encode` (Python) and `tf_encode` (TensorFlow, for `tf.data`) give the
    same ids.

    Args:
        characters: str of distinct ASCII characters. Defaults to the 26
            lowercase letters, the apostrophe and the space.
        lowercase: bool, lowercase the text before encoding.

    Attributes:
        size: int, the number of characters (the `vocabulary_size` of
            `speech_recognizer`, whose logits have `size + 1` classes).

    Example:

    >>> vocabulary = CharacterVocabulary()
    >>> vocabulary.encode("It's  OK!")
    [9, 20, 27, 19, 28, 15, 11]
    >>> vocabulary.decode([9, 20, 27, 19, 28, 15, 11, 0, 0])
    "it's ok"
    """

    def __init__(self, characters=DEFAULT_CHARACTERS, lowercase=True):
        if (
            not isinstance(characters, str)
            or not characters
            or len(set(characters)) != len(characters)
            or not all(0 < ord(c) < 128 for c in characters)
        ):
            raise ValueError(
                "`CharacterVocabulary`: `characters` must be a non-empty str of "
                f"distinct ASCII characters. Received: characters={characters!r}"
            )
        self.characters = characters
        self.lowercase = bool(lowercase)
        self.size = len(characters)
        self._ids = {c: i + 1 for i, c in enumerate(characters)}
        self.space_id = self._ids.get(" ", 0)
        # Byte -> id (0 for bytes outside the vocabulary), for `tf_encode`.
        self.byte_table = np.zeros(256, "int32")
        for c, i in self._ids.items():
            self.byte_table[ord(c)] = i

    def __len__(self):
        return self.size

    def __repr__(self):
        return f"CharacterVocabulary(characters={self.characters!r}, lowercase={self.lowercase})"

    def normalize(self, text):
        """The text `encode` spells out (lowercase, known characters, single
        spaces)."""
        return self.decode(self.encode(text))

    def encode(self, text):
        """Character ids (a list of ints >= 1) of a normalised `text`."""
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        if self.lowercase:
            text = text.lower()
        ids = []
        for c in text:
            if c.isspace():
                c = " "
            i = self._ids.get(c)
            if i is None:
                continue
            if i == self.space_id and (not ids or ids[-1] == self.space_id):
                continue
            ids.append(i)
        if ids and ids[-1] == self.space_id:
            ids.pop()
        return ids

    def decode(self, ids):
        """The text of `ids` (ints or an array); ids 0 and unknown ids are
        skipped."""
        return "".join(
            self.characters[i - 1] for i in (int(i) for i in np.asarray(ids).reshape(-1)) if 0 < i <= self.size
        )

    def tf_encode(self, text):
        """`encode` for a scalar string tensor, in TensorFlow ops.

        Returns:
            int32 `(length,)` ids (ASCII lowercasing: multi-byte characters
            are dropped as unknown).
        """
        import tensorflow as tf

        if self.lowercase:
            text = tf.strings.lower(text)
        text = tf.strings.regex_replace(text, r"\s", " ")
        codes = tf.cast(tf.io.decode_raw(text, tf.uint8), tf.int32)
        ids = tf.gather(tf.constant(self.byte_table), codes)
        ids = tf.boolean_mask(ids, ids > 0)
        if self.space_id:
            space = tf.equal(ids, self.space_id)
            # A space right after a space (or at the start) goes; then a
            # trailing space.
            previous = tf.concat([[True], space[:-1]], axis=0)
            ids = tf.boolean_mask(ids, tf.logical_not(space & previous))
            trailing = tf.reduce_any(tf.equal(ids[-1:], self.space_id))
            ids = ids[: tf.shape(ids)[0] - tf.cast(trailing, tf.int32)]
        return ids


@dataclasses.dataclass
class SpeechRecognitionData:
    """What `speech_recognition_data` returns.

    Attributes:
        train: `tf.data.Dataset` of `(float32 (batch, num_samples), int32
            (batch, max_label_length))` (with `with_lengths=True` the inputs
            are the pair `(waveform, int32 (batch,) valid samples)`),
            shuffled, last partial batch dropped, utterances longer than
            `num_samples` or with more than `max_label_length` characters
            left out.
        validation: like `train`, in order, every utterance (long ones
            cropped and their labels truncated), or `None` without that
            split.
        test: like `validation`, or `None`.
        vocabulary: the `CharacterVocabulary`.
        vocabulary_size: int, `vocabulary.size` (pass it to
            `speech_recognizer`).
        num_samples: int.
        sample_rate: int.
        max_label_length: int.
    """

    train: object
    validation: object
    test: object
    vocabulary: CharacterVocabulary
    vocabulary_size: int
    num_samples: int
    sample_rate: int
    max_label_length: int


SOURCE = "speech_recognition_data"


def speech_recognition_data(
    name="librispeech",
    data_dir=None,
    train_split="train_clean100",
    validation_split="dev_clean",
    test_split="test_clean",
    num_samples=16000 * 16,
    max_label_length=256,
    batch_size=16,
    sample_rate=16000,
    vocabulary=None,
    with_lengths=False,
    speech_key="speech",
    text_key="text",
    shuffle_buffer=1000,
    seed=0,
):
    """A tfds speech dataset as fixed-shape `(waveform, character ids)` batches.

    Args:
        name: tfds name of a dataset with an int16 `speech_key` waveform and
            a string `text_key` transcript (`"librispeech"`).
        data_dir: tfds data directory.
        train_split, validation_split, test_split: tfds split names (or
            `None` to skip one; `train_split` is required). LibriSpeech has
            `train_clean100`, `train_clean360`, `train_other500`,
            `dev_clean`, `dev_other`, `test_clean` and `test_other`.
        num_samples: int, waveforms are zero-padded or cropped to this many
            samples (keeping the start).
        max_label_length: int, labels are zero-padded (or, outside `train`,
            truncated) to this many character ids. CTC needs at least as
            many output frames as characters (plus one per doubled letter):
            at 16 kHz, `speech_recognizer`'s default framing gives
            `num_samples / 640` frames (25 per second, 401 for 16 s).
        batch_size: int.
        sample_rate: int, the dataset's sampling rate (16 kHz for
            LibriSpeech); only reported.
        vocabulary: a `CharacterVocabulary`. Defaults to lowercase letters,
            apostrophe and space.
        with_lengths: bool, inputs are `(waveform, length)` with the valid
            sample count, for `speech_recognizer(..., input_lengths=True)`.
        speech_key, text_key: the feature names.
        shuffle_buffer: int.
        seed: shuffle seed.

    Returns:
        A `SpeechRecognitionData`.

    Example:

    ```python
    data = speech_recognition_data(num_samples=16000 * 16, max_label_length=256)
    model = speech_recognizer(data.num_samples, data.vocabulary_size)
    compile_speech_recognizer(model)
    model.fit(data.train, validation_data=data.validation)
    ```
    """
    import tensorflow as tf

    for argument, value in (
        ("num_samples", num_samples),
        ("max_label_length", max_label_length),
        ("batch_size", batch_size),
        ("sample_rate", sample_rate),
        ("shuffle_buffer", shuffle_buffer),
    ):
        check_positive_int(SOURCE, argument, value)
    if not train_split:
        raise argument_error(SOURCE, "train_split", "must name a split", f"train_split={train_split!r}")
    if vocabulary is None:
        vocabulary = CharacterVocabulary()
    if not isinstance(vocabulary, CharacterVocabulary):
        raise argument_error(
            SOURCE, "vocabulary", "must be a CharacterVocabulary or None", f"vocabulary={vocabulary!r}"
        )

    builder = prepared_builder("`speech_recognition_data`", name, data_dir)
    features = builder.info.features
    for argument, key in (("speech_key", speech_key), ("text_key", text_key)):
        if key not in features:
            raise ValueError(
                f"`speech_recognition_data`: {name!r} has no feature {key!r} "
                f"(`{argument}`); it has {sorted(features)}"
            )

    def encode(example):
        speech = example[speech_key]
        ids = vocabulary.tf_encode(example[text_key])
        return speech, tf.shape(speech)[0], ids

    def fits(speech, length, ids):
        return tf.logical_and(length <= num_samples, tf.shape(ids)[0] <= max_label_length)

    def prepare(speech, length, ids):
        speech = speech[:num_samples]
        wave = tf.cast(tf.pad(speech, [[0, num_samples - tf.shape(speech)[0]]]), tf.float32) / 32768.0
        wave = tf.ensure_shape(wave, (num_samples,))
        ids = ids[:max_label_length]
        labels = tf.ensure_shape(tf.pad(ids, [[0, max_label_length - tf.shape(ids)[0]]]), (max_label_length,))
        if with_lengths:
            return (wave, tf.cast(tf.minimum(length, num_samples), tf.int32)), labels
        return wave, labels

    def load(split, train):
        if not split:
            return None
        examples = load_prepared("`speech_recognition_data`", name, split=split, data_dir=data_dir, shuffle_files=train)
        examples = examples.map(encode, num_parallel_calls=tf.data.AUTOTUNE)
        if train:
            examples = examples.filter(fits).shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        examples = examples.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
        return prefetched(examples.batch(batch_size, drop_remainder=train))

    return SpeechRecognitionData(
        train=load(train_split, True),
        validation=load(validation_split, False),
        test=load(test_split, False),
        vocabulary=vocabulary,
        vocabulary_size=vocabulary.size,
        num_samples=num_samples,
        sample_rate=sample_rate,
        max_label_length=max_label_length,
    )
