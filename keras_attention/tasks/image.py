"""The `image` task: tfds image classification + `image_classifier`."""

from keras_attention.tasks.base import ClassificationTask
from keras_attention.tasks.base import TaskData
from keras_attention.tasks.base import register_task


@register_task
class ImageTask(ClassificationTask):
    """Image classification on a tensorflow-datasets dataset (default
    `mnist`) with a ViT (`image_classifier`).

    Options: `image_size` (`[height, width]`), `patch_size`, `conv_stem`,
    `conv_attention`, `pooling`, `augmentation`, the encoder sizes,
    `epochs`, `steps`, `batch_size`, `learning_rate`, `warmup_steps`,
    `train_split`, `test_split`.
    """

    name = "image"
    description = "image classification (tfds, e.g. mnist, fashion_mnist, cifar10) with a ViT"
    default_dataset = "mnist"
    defaults = {
        "image_size": None,
        "train_split": "train",
        "test_split": "test",
        "patch_size": 4,
        "conv_stem": True,
        "conv_attention": None,
        "pooling": "attention",
        "augmentation": True,
        "stem_normalization": "layer",
        "hidden_dim": 64,
        "num_layers": 2,
        "num_heads": 4,
        "intermediate_dim": 128,
        "dropout": 0.1,
        "epochs": 8,
        "steps": None,
        "batch_size": 128,
        "learning_rate": 2e-3,
        "warmup_steps": 200,
    }

    def load(self, dataset, data_dir, options):
        from keras_attention.data.vision import image_classification_data

        data = image_classification_data(
            dataset,
            data_dir=data_dir,
            train_split=options["train_split"],
            test_split=options["test_split"],
            image_size=options["image_size"],
            batch_size=options["batch_size"],
        )
        return TaskData(
            train=data.train,
            validation=None,
            test=data.test,
            info={
                "num_classes": data.num_classes,
                "image_shape": data.image_shape,
                "majority_accuracy": data.majority_accuracy,
                "train_batches": int(data.train.cardinality()),
                "label_names": data.label_names,
            },
            train_split=options["train_split"],
            test_split=options["test_split"],
        )

    def probe_info(self, options):
        size = options["image_size"] or (28, 28)
        return {
            "num_classes": 10,
            "image_shape": (*tuple(size)[:2], 1),
            "majority_accuracy": 0.0,
            "train_batches": 1,
        }

    def build(self, data, attention, attention_kwargs, options):
        from keras_attention.models import image_classifier

        info = data.info
        model = image_classifier(
            tuple(info["image_shape"]),
            info["num_classes"],
            patch_size=options["patch_size"],
            **self.encoder_options(options),
            attention=attention,
            attention_kwargs=attention_kwargs,
            conv_stem=options["conv_stem"],
            conv_attention=options["conv_attention"],
            pooling=options["pooling"],
            augmentation=options["augmentation"],
            stem_normalization=options["stem_normalization"],
            name=f"image_{attention}",
        )
        return self.compile(model, data, options)
