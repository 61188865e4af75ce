import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_attention.data.segmentation import segmentation_data


def _trimap(height, width):
    """Oxford-IIIT Pet style trimap: values 1, 2, 3 in vertical stripes."""
    return (1 + (np.arange(width) * 3 // width))[None, :, None].repeat(height, 0).astype("uint8")


def _mock_pets(self, *args, **kwargs):
    def generate():
        for i, (height, width) in enumerate([(8, 12), (16, 24), (5, 7)]):
            image = np.full((height, width, 3), 40 * i, "uint8")
            image[:, : width // 2] = 200  # left half bright: flips are visible
            yield {
                "image": image,
                "segmentation_mask": _trimap(height, width),
                "label": i,
                "species": i % 2,
                "file_name": f"pet_{i}.jpg",
                "head_bbox": np.zeros(4, "float32"),
            }

    return tf.data.Dataset.from_generator(
        generate,
        output_signature={
            "image": tf.TensorSpec((None, None, 3), tf.uint8),
            "segmentation_mask": tf.TensorSpec((None, None, 1), tf.uint8),
            "label": tf.TensorSpec((), tf.int64),
            "species": tf.TensorSpec((), tf.int64),
            "file_name": tf.TensorSpec((), tf.string),
            "head_bbox": tf.TensorSpec((4,), tf.float32),
        },
    )


def test_on_mock_oxford_iiit_pet():
    with tfds.testing.mock_data(num_examples=5):
        # Random mock masks take any uint8 value: declare 256 classes.
        data = segmentation_data("oxford_iiit_pet", image_size=(16, 24), batch_size=2, num_classes=256, mask_offset=0)
        assert data.image_shape == (16, 24, 3) and data.num_classes == 256
        image_spec, mask_spec = data.train.element_spec
        assert tuple(image_spec.shape) == (2, 16, 24, 3) and image_spec.dtype == tf.uint8
        assert tuple(mask_spec.shape) == (2, 16, 24) and mask_spec.dtype == tf.int32
        assert tuple(data.test.element_spec[1].shape) == (None, 16, 24)
        assert sum(int(images.shape[0]) for images, _ in data.test) == 5
        assert sum(1 for _ in data.train) == 2  # drop_remainder


def test_mask_offset_and_nearest_resize():
    with tfds.testing.mock_data(as_dataset_fn=_mock_pets):
        data = segmentation_data("oxford_iiit_pet", image_size=(8, 12), batch_size=3)
        images, masks = next(iter(data.test))
    masks = masks.numpy()
    # The first trimap has the target size: exactly the values minus one.
    np.testing.assert_array_equal(masks[0], _trimap(8, 12)[..., 0].astype("int32") - 1)
    np.testing.assert_array_equal(masks[0, 0], [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    # Resized masks keep class ids only (nearest neighbours, no blending).
    for mask in masks:
        assert set(np.unique(mask)) == {0, 1, 2}
    np.testing.assert_array_equal(masks[1], masks[0])  # 16x24 -> 8x12 halves exactly
    assert images.dtype == tf.uint8
    np.testing.assert_array_equal(images.numpy()[1, :, :6], 200)
    np.testing.assert_array_equal(images.numpy()[1, :, 6:], 40)


def test_flips_move_image_and_mask_together():
    with tfds.testing.mock_data(as_dataset_fn=_mock_pets):
        data = segmentation_data("oxford_iiit_pet", image_size=(8, 12), batch_size=1, flip=True)
        unflipped = np.concatenate([masks.numpy() for _, masks in data.test])
        seen = set()
        for _ in range(4):
            for images, masks in data.train:
                image = images.numpy()[0]
                index = int(image.min()) // 40  # example i is 40 * i outside its bright half
                flipped = bool(image[0, -1, 0] == 200)
                expected = unflipped[index]
                np.testing.assert_array_equal(masks[0], expected[:, ::-1] if flipped else expected)
                seen.add(flipped)
    assert seen == {True, False}


@pytest.mark.parametrize(
    "name,kwargs,match",
    [
        ("oxford_iiit_pet", {"image_size": (8, 8, 3)}, "`image_size`"),
        ("oxford_iiit_pet", {"batch_size": 0}, "`batch_size`"),
        ("oxford_iiit_pet", {"mask_key": "trimap"}, "has no feature 'trimap'"),
        ("mnist", {}, r"`num_classes` must be an int >= 2 \(it is only known for \['oxford_iiit_pet'\]\)"),
    ],
)
def test_bad_arguments(name, kwargs, match):
    with tfds.testing.mock_data(num_examples=1):
        with pytest.raises(ValueError, match=match):
            segmentation_data(name, **kwargs)
