"""Audio classification pipelines over tensorflow-datasets.

`spoken_digit_data` knows the Free Spoken Digit Dataset's layout (one
`train` split of recordings named `digit_speaker_index.wav`) and cuts it the
usual ways: the standard split (recordings 0-4 of every speaker and digit
are the test set), for digits or for speakers, and leave-one-speaker-out
folds (is a new voice understood?).
"""

import dataclasses

from keras_attention.data.feeding import prefetched
from keras_attention.data.prepared import cache_in_memory
from keras_attention.data.prepared import load_prepared

SPLITS = ("standard", "leave_one_speaker_out")
TARGETS = ("digit", "speaker")


@dataclasses.dataclass
class AudioClassificationData:
    """What the audio pipelines return.

    Attributes:
        train: `tf.data.Dataset` of `(float32 (batch, num_samples), int64
            (batch,))`, shuffled, last partial batch dropped.
        test: like `train`, in order, all examples.
        num_samples: int, samples per waveform.
        sample_rate: int.
        num_classes: int.
        label_names: list of class names.
        majority_accuracy: accuracy of always answering the training split's
            most frequent class on `test`.
    """

    train: object
    test: object
    num_samples: int
    sample_rate: int
    num_classes: int
    label_names: list
    majority_accuracy: float


def fix_length(audio, num_samples):
    """Crops or zero-pads a 1-D waveform to `num_samples` (keeps the start)."""
    import tensorflow as tf

    audio = audio[:num_samples]
    return tf.pad(audio, [[0, num_samples - tf.shape(audio)[0]]])


def spoken_digit_data(
    data_dir=None,
    target="digit",
    split="standard",
    test_speaker=None,
    num_samples=8000,
    batch_size=32,
    shuffle_buffer=4000,
    seed=0,
):
    """The Free Spoken Digit Dataset (`spoken_digit` in tfds), cut for a task.

    Args:
        data_dir: tfds data directory.
        target: `"digit"` (10 classes) or `"speaker"` (one class per
            speaker, in sorted name order).
        split: `"standard"` (recordings with index 0-4 of each speaker and
            digit are the test set) or `"leave_one_speaker_out"` (all of
            `test_speaker`'s recordings are the test set; digits only).
        test_speaker: the held-out speaker's name or index (in sorted order)
            for `"leave_one_speaker_out"`.
        num_samples: int, waveforms are cropped / zero-padded to this many
            samples (8,000 = 1 s at 8 kHz).
        batch_size: int.
        shuffle_buffer: int.
        seed: shuffle seed.

    Returns:
        An `AudioClassificationData` (waveforms as float32 in [-1, 1]).
    """
    import numpy as np
    import tensorflow as tf
    import tensorflow_datasets as tfds

    if target not in TARGETS:
        raise ValueError(f"`spoken_digit_data`: `target` must be one of {TARGETS}. Received: target={target!r}")
    if split not in SPLITS:
        raise ValueError(f"`spoken_digit_data`: `split` must be one of {SPLITS}. Received: split={split!r}")
    if split == "leave_one_speaker_out" and target != "digit":
        raise ValueError("`spoken_digit_data`: leave-one-speaker-out is a digit task; use target='digit'")
    source = load_prepared("`spoken_digit_data`", "spoken_digit", split="train", data_dir=data_dir)
    names = [
        n.decode()
        for batch in tfds.as_numpy(source.map(lambda ex: ex["audio/filename"]).batch(4096))
        for n in batch
    ]
    parts = [n.rsplit(".", 1)[0].split("_") for n in names]
    speakers = sorted({p[1] for p in parts})
    if split == "leave_one_speaker_out":
        if isinstance(test_speaker, int) and not isinstance(test_speaker, bool) and 0 <= test_speaker < len(speakers):
            test_speaker = speakers[test_speaker]
        if test_speaker not in speakers:
            raise ValueError(
                f"`spoken_digit_data`: `test_speaker` must be one of {speakers} "
                f"(or an index). Received: test_speaker={test_speaker!r}"
            )
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(speakers, tf.range(len(speakers), dtype=tf.int64)), -1
    )

    def fields(example):
        stem = tf.strings.regex_replace(example["audio/filename"], r"\.wav$", "")
        pieces = tf.strings.split(stem, "_")
        speaker = table.lookup(pieces[1])
        index = tf.strings.to_number(pieces[2], tf.int64)
        label = example["label"] if target == "digit" else speaker
        return example["audio"], label, speaker, index

    def is_test(audio, label, speaker, index):
        if split == "standard":
            return index < 5
        return tf.equal(speaker, speakers.index(test_speaker))

    def prepare(audio, label, speaker, index):
        wave = tf.cast(fix_length(audio, num_samples), tf.float32) / 32768.0
        return tf.ensure_shape(wave, (num_samples,)), label

    examples = source.map(fields, num_parallel_calls=tf.data.AUTOTUNE).cache()
    train = cache_in_memory(examples.filter(lambda *x: tf.logical_not(is_test(*x))).map(prepare))
    test = cache_in_memory(examples.filter(is_test).map(prepare))
    train_labels = np.concatenate([y.numpy() for _, y in train.batch(4096)])
    test_labels = np.concatenate([y.numpy() for _, y in test.batch(4096)])
    num_classes = 10 if target == "digit" else len(speakers)
    majority = int(np.argmax(np.bincount(train_labels, minlength=num_classes)))
    return AudioClassificationData(
        train=train.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size, drop_remainder=True)
        .apply(prefetched),
        test=prefetched(test.batch(batch_size)),
        num_samples=num_samples,
        sample_rate=8000,
        num_classes=num_classes,
        label_names=[str(d) for d in range(10)] if target == "digit" else speakers,
        majority_accuracy=float(np.mean(test_labels == majority)),
    )
