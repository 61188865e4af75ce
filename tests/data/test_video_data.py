import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_attention.data.video import sample_frame_indices
from keras_attention.data.video import video_classification_data

# Frame `i` of every mock video has all pixels equal to `10 * i`, so the
# sampled frame indices can be read back from the pixel values.
LENGTHS = (10, 3, 4, 7)


def _mock_videos(encode):
    def as_dataset(self, *args, **kwargs):
        def generate():
            for label, length in enumerate(LENGTHS):
                video = np.broadcast_to(
                    (10 * np.arange(length, dtype=np.uint8))[:, None, None, None], (length, 24, 32, 3)
                ).copy()
                if encode:  # as stored: one PNG per frame
                    video = np.array([tf.io.encode_png(frame).numpy() for frame in video], dtype=object)
                yield {"video": video, "label": label}

        spec = tf.TensorSpec((None,), tf.string) if encode else tf.TensorSpec((None, None, None, 3), tf.uint8)
        return tf.data.Dataset.from_generator(
            generate, output_signature={"video": spec, "label": tf.TensorSpec((), tf.int64)}
        )

    return as_dataset


def test_sample_frame_indices():
    np.testing.assert_array_equal(sample_frame_indices(10, 4), [1, 3, 6, 8])  # segment centres
    np.testing.assert_array_equal(sample_frame_indices(4, 4), [0, 1, 2, 3])
    np.testing.assert_array_equal(sample_frame_indices(3, 4), [0, 1, 2, 2])  # last frame repeated
    np.testing.assert_array_equal(sample_frame_indices(1, 3), [0, 0, 0])
    tf.random.set_seed(0)
    for _ in range(5):
        random = sample_frame_indices(20, 4, random=True).numpy()
        assert np.all(random // 5 == np.arange(4)), random  # one frame from each segment


def test_on_mock_ucf101():
    with tfds.testing.mock_data(num_examples=5):
        data = video_classification_data("ucf101", frames=4, image_size=16, batch_size=2)
        assert data.video_shape == (4, 16, 16, 3) and data.num_classes == 101
        assert len(data.label_names) == 101
        video_spec, label_spec = data.train.element_spec
        assert tuple(video_spec.shape) == (2, 4, 16, 16, 3) and video_spec.dtype == tf.uint8
        assert tuple(label_spec.shape) == (2,) and label_spec.dtype == tf.int64
        assert tuple(data.test.element_spec[0].shape) == (None, 4, 16, 16, 3)
        assert sum(int(v.shape[0]) for v, _ in data.test) == 5
        assert sum(1 for _ in data.train) == 2  # drop_remainder


@pytest.mark.parametrize("encode", [True, False])
def test_uniform_sampling_and_padding(encode):
    with tfds.testing.mock_data(as_dataset_fn=_mock_videos(encode)):
        data = video_classification_data("ucf101", frames=4, image_size=(8, 12), batch_size=4)
        videos, labels = next(iter(data.test))
    assert videos.shape == (4, 4, 8, 12, 3) and videos.dtype == tf.uint8
    np.testing.assert_array_equal(labels, [0, 1, 2, 3])
    expected = 10 * np.array([[1, 3, 6, 8], [0, 1, 2, 2], [0, 1, 2, 3], [0, 2, 4, 6]])
    frames = videos.numpy()
    np.testing.assert_array_equal(frames[:, :, 0, 0, 0], expected)
    # Constant frames stay constant through the resize.
    np.testing.assert_array_equal(frames, np.broadcast_to(expected[:, :, None, None, None], frames.shape))


def test_random_sampling_stays_in_segments():
    with tfds.testing.mock_data(as_dataset_fn=_mock_videos(False)):
        data = video_classification_data("ucf101", frames=2, image_size=8, batch_size=1, sampling="random")
        for videos, labels in data.train:
            length = LENGTHS[int(labels[0])]
            first, second = videos.numpy()[0, :, 0, 0, 0] // 10
            # Halves [0, length / 2) and [length / 2, length).
            assert 0 <= first <= (length - 1) // 2 and length // 2 <= second <= length - 1


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"frames": 0}, "`frames` must be a positive int"),
        ({"image_size": (8,)}, "`image_size`"),
        ({"sampling": "dense"}, r"`sampling` must be one of \['uniform', 'random'\]"),
        ({"batch_size": 0}, "`batch_size`"),
        ({"video_key": "clip"}, "has no feature 'clip'"),
    ],
)
def test_bad_arguments(kwargs, match):
    with tfds.testing.mock_data(num_examples=1):
        with pytest.raises(ValueError, match=match):
            video_classification_data("ucf101", **kwargs)
