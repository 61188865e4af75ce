"""Video classification pipelines over tensorflow-datasets."""

import dataclasses

from keras_attention.arguments import check_positive_int
from keras_attention.data.arguments import image_size_argument
from keras_attention.data.feeding import prefetched
from keras_attention.data.prepared import load_prepared
from keras_attention.data.prepared import prepared_builder

SAMPLINGS = ("uniform", "random")


@dataclasses.dataclass
class VideoClassificationData:
    """What `video_classification_data` returns.

    Attributes:
        train: `tf.data.Dataset` of `(uint8 (batch, frames, H, W, C), int64
            (batch,))`, shuffled, last partial batch dropped.
        test: like `train`, in order, all examples, frames sampled
            uniformly.
        video_shape: `(frames, H, W, C)`.
        num_classes: int.
        label_names: list of class names.
    """

    train: object
    test: object
    video_shape: tuple
    num_classes: int
    label_names: list


def sample_frame_indices(length, frames, random=False, seed=None):
    """Indices of `frames` frames sampled from a clip of `length` frames.

    Uniform sampling: the clip is cut into `frames` equal segments and the
    centre frame of each is taken, `floor((i + 0.5) * length / frames)`; with
    `random=True` a random frame of each segment is taken instead (training
    augmentation, as in TSN). A clip shorter than `frames` is padded by
    repeating its last frame: `min(i, length - 1)`.

    Args:
        length: int32 scalar tensor (or int) >= 1, the clip's frames.
        frames: int, the frames to sample.
        random: bool, random positions within the segments.
        seed: optional int, the op seed of the random positions.

    Returns:
        An int32 `(frames,)` tensor of indices in `[0, length)`.
    """
    import tensorflow as tf

    length = tf.cast(length, tf.int32)
    steps = tf.range(frames, dtype=tf.float32)
    offset = (
        tf.random.uniform((frames,), 0.0, 1.0, seed=seed) if random else tf.fill((frames,), 0.5)
    )
    segments = tf.cast(tf.floor((steps + offset) * tf.cast(length, tf.float32) / frames), tf.int32)
    padded = tf.range(frames, dtype=tf.int32)
    indices = tf.where(length >= frames, segments, padded)
    return tf.clip_by_value(indices, 0, tf.maximum(length - 1, 0))


def video_classification_data(
    name="ucf101",
    data_dir=None,
    frames=16,
    image_size=(112, 112),
    batch_size=8,
    train_split="train",
    test_split="test",
    video_key="video",
    label_key="label",
    sampling="uniform",
    shuffle_buffer=256,
    cache=False,
    seed=0,
):
    """Loads a tfds video-classification dataset as fixed-size clips.

    Each video is reduced to `frames` frames (see `sample_frame_indices`:
    the centres of `frames` equal segments; a shorter video repeats its last
    frame), only those frames are decoded, and they are resized (bilinear)
    to `image_size` and cast back to `uint8` (the builders rescale inside the
    model). Every tensor has a static shape.

    Args:
        name: tfds name (with config, e.g. `"ucf101/ucf101_1_256"`) with a
            `Video` feature and a `ClassLabel`, e.g. `"ucf101"`.
        data_dir: tfds data directory.
        frames: int, frames per clip.
        image_size: int or `(height, width)`.
        batch_size: int.
        train_split, test_split: split names (tfds slicing works).
        video_key, label_key: feature names.
        sampling: `"uniform"` (segment centres) or `"random"` (a random
            frame per segment) for the training split; the test split is
            always sampled uniformly.
        shuffle_buffer: int, training shuffle buffer.
        cache: bool, cache the decoded clips in memory (after sampling and
            resizing; `frames * H * W * C` bytes per video).
        seed: shuffle (and random sampling) seed.

    Returns:
        A `VideoClassificationData`.

    Example:

    ```python
    data = video_classification_data("ucf101", frames=8, image_size=64)
    model = video_classifier(8, 64, data.num_classes, tubelet_size=(2, 8, 8))
    compile_video_classifier(model)
    model.fit(data.train, validation_data=data.test, epochs=1)
    ```
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    where = "`video_classification_data`"
    check_positive_int(where, "frames", frames)
    image_size = image_size_argument(where, image_size)
    check_positive_int(where, "batch_size", batch_size)
    if sampling not in SAMPLINGS:
        raise ValueError(
            f"{where}: `sampling` must be one of {list(SAMPLINGS)}. Received: sampling={sampling!r}"
        )
    builder = prepared_builder(where, name, data_dir)
    features = builder.info.features
    for key in (video_key, label_key):
        if key not in features:
            raise ValueError(f"{where}: {name!r} has no feature {key!r}; it has {sorted(features)}")
    channels = features[video_key].shape[-1]
    if channels is None:
        raise ValueError(f"{where}: {name!r} videos have no fixed channel count")
    shape = (frames, int(image_size[0]), int(image_size[1]), int(channels))
    num_classes = int(features[label_key].num_classes)

    def decode_frame(encoded):
        frame = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
        return tf.ensure_shape(frame, (None, None, channels))

    def prepare(example, random):
        video = example[video_key]
        indices = sample_frame_indices(tf.shape(video)[0], frames, random=random, seed=seed)
        video = tf.gather(video, indices)
        if video.dtype == tf.string:  # frames left encoded: decode the sampled ones only
            video = tf.map_fn(
                decode_frame, video, fn_output_signature=tf.TensorSpec((None, None, channels), tf.uint8)
            )
        video = tf.image.resize(video, shape[1:3])
        video = tf.cast(tf.clip_by_value(tf.round(video), 0, 255), tf.uint8)
        return tf.ensure_shape(video, shape), tf.ensure_shape(example[label_key], ())

    def load(split, training):
        ds = load_prepared(
            where,
            name,
            split=split,
            data_dir=data_dir,
            shuffle_files=training,
            decoders={video_key: tfds.decode.SkipDecoding()},
        )
        random = training and sampling == "random"
        ds = ds.map(lambda ex: prepare(ex, random), num_parallel_calls=tf.data.AUTOTUNE)
        if cache and not random:
            ds = ds.cache()
        if training:
            ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        return prefetched(ds.batch(batch_size, drop_remainder=training))

    return VideoClassificationData(
        train=load(train_split, True),
        test=load(test_split, False),
        video_shape=shape,
        num_classes=num_classes,
        label_names=list(features[label_key].names),
    )
