"""image_text_classification_data on a small tfds dataset built here."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_attention.data import image_text_classification_data
from keras_attention.models import compile_classifier
from keras_attention.models import multimodal_classifier

WORDS = ["red", "blue"]


class ImageTextToy(tfds.core.GeneratorBasedBuilder):
    """Images of one colour with a caption; the label is 'caption matches'."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(12, 10, 3)),
                "text": tfds.features.Text(),
                "label": tfds.features.ClassLabel(names=["mismatch", "match"]),
            }),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, 24), "test": self._generate_examples(1, 7)}

    def _generate_examples(self, seed, count):
        rng = np.random.default_rng(seed)
        for i in range(count):
            colour, said = rng.integers(0, 2, 2)
            image = np.zeros((12, 10, 3), "uint8")
            image[..., 0 if colour == 0 else 2] = 255
            yield i, {"image": image, "text": f"a {WORDS[said]} square", "label": int(colour == said)}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("tfds"))
    ImageTextToy(data_dir=directory).download_and_prepare()
    return directory


def test_pipeline_shapes_and_ids(data_dir):
    data = image_text_classification_data("image_text_toy", data_dir=data_dir, image_size=8, sequence_length=5, batch_size=4)
    assert data.image_shape == (8, 8, 3) and data.num_classes == 2
    features, labels = data.train.element_spec
    assert tuple(features["image"].shape) == (4, 8, 8, 3) and features["image"].dtype == tf.uint8
    assert tuple(features["tokens"].shape) == (4, 5) and features["tokens"].dtype == tf.int32
    assert sum(1 for _ in data.train) == 6
    assert sum(int(y.shape[0]) for _, y in data.test) == 7
    index = {t: i for i, t in enumerate(data.vocabulary)}
    (features, labels), = data.test.take(1)
    for tokens, image, label in zip(features["tokens"].numpy(), features["image"].numpy(), labels.numpy()):
        said = "red" if tokens[1] == index["red"] else "blue"
        np.testing.assert_array_equal(tokens, [index["a"], index[said], index["square"], 0, 0])
        colour = "red" if image[..., 0].mean() > image[..., 2].mean() else "blue"
        assert label == int(colour == said)


@pytest.mark.slow  # trains the builder on the pipeline (about 28 s); the pipeline's own tests stay in the default run
def test_feeds_multimodal_classifier(data_dir):
    data = image_text_classification_data("image_text_toy", data_dir=data_dir, image_size=8, sequence_length=5, batch_size=4)
    model = multimodal_classifier(8, 5, len(data.vocabulary), 2, patch_size=4, hidden_dim=16, num_layers=1, num_heads=2)
    compile_classifier(model)
    history = model.fit(data.train, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
    assert model.predict(data.test, verbose=0).shape == (7, 2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"text_key": "caption"}, "has no feature 'caption'"),
        ({"label_key": "text"}, "not a ClassLabel"),
        ({"image_size": 0}, "image_size"),
        ({"sequence_length": 0}, "sequence_length"),
    ],
)
def test_errors(data_dir, kwargs, match):
    with pytest.raises(ValueError, match=match):
        image_text_classification_data("image_text_toy", data_dir=data_dir, **kwargs)
