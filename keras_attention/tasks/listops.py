"""The `listops` task: the embedded ListOps data + `text_classifier`."""

import numpy as np

from keras_attention.tasks.base import ClassificationTask
from keras_attention.tasks.base import TaskData
from keras_attention.tasks.base import register_task


@register_task
class ListopsTask(ClassificationTask):
    """Long Range Arena's ListOps, generated locally: the value (0-9) of a
    nested MIN/MAX/MED/SM expression, read token by token.

    Options (`--option KEY=VALUE` on the command line): `config` (`"small"`
    or `"lra"`) and any of its fields (`min_length`, `max_length` (also the
    padded length), `train_size`, `validation_size`, `test_size`,
    `data_seed`), and the `text_classifier` sizes (`hidden_dim`, `num_layers`,
    `num_heads`, `intermediate_dim`, `dropout`, `pooling`), `epochs`,
    `steps`, `batch_size`, `learning_rate`, `warmup_steps`.
    """

    name = "listops"
    description = "ListOps (Long Range Arena), generated locally: 10-class value of nested list operations"
    default_dataset = "listops"
    monitor = "accuracy"
    defaults = {
        "config": "small",
        "min_length": None,
        "max_length": None,
        "train_size": None,
        "validation_size": None,
        "test_size": None,
        "data_seed": None,
        "hidden_dim": 64,
        "num_layers": 2,
        "num_heads": 4,
        "intermediate_dim": 128,
        "dropout": 0.1,
        "pooling": "mean",
        "epochs": 3,
        "steps": None,
        "batch_size": 32,
        "learning_rate": 1e-3,
        "warmup_steps": 300,
    }

    def load(self, dataset, data_dir, options):
        from keras_attention.data import listops

        if dataset != "listops":
            raise ValueError(
                f"Task 'listops' reads the embedded 'listops' dataset. "
                f"Received: dataset={dataset!r}"
            )
        common = dict(data_dir=data_dir, config=_config(options))
        train = listops.load_listops("train", batch_size=options["batch_size"], **common)
        validation = listops.load_listops("validation", batch_size=64, **common)
        test = listops.load_listops("test", batch_size=64, **common)
        counts = np.zeros(listops.NUM_CLASSES)
        for _, labels in test:
            counts += np.bincount(labels.numpy(), minlength=listops.NUM_CLASSES)
        sequence_length = int(train.element_spec[0].shape[1])
        return TaskData(
            train=train,
            validation=validation,
            test=test,
            info={
                "num_classes": listops.NUM_CLASSES,
                "vocabulary_size": len(listops.listops_vocabulary()),
                "sequence_length": sequence_length,
                "majority_accuracy": float(counts.max() / counts.sum()),
                "train_batches": int(train.cardinality()),
            },
            vocabulary=listops.listops_vocabulary(),
            validation_split="validation",
        )

    def probe_info(self, options):
        from keras_attention.data import listops

        config = _config(options)
        length = (
            config.max_length
            if isinstance(config, listops.ListopsConfig)
            else _config_max_length(config)
        )
        return {
            "num_classes": listops.NUM_CLASSES,
            "vocabulary_size": len(listops.listops_vocabulary()),
            "sequence_length": length,
            "majority_accuracy": 0.0,
            "train_batches": 1,
        }

    def build(self, data, attention, attention_kwargs, options):
        from keras_attention.models import text_classifier

        info = data.info
        model = text_classifier(
            info["vocabulary_size"],
            info["num_classes"],
            info["sequence_length"],
            **self.encoder_options(options),
            attention=attention,
            attention_kwargs=attention_kwargs,
            pooling=options["pooling"],
            name=f"listops_{attention}",
        )
        return self.compile(model, data, options)


    def encode(self, texts, options, vocabulary):
        from keras_attention.data import listops

        config = _config(options)
        length = (
            config.max_length
            if isinstance(config, listops.ListopsConfig)
            else _config_max_length(config)
        )
        batch = np.zeros((len(texts), length), dtype="int32")
        for i, text in enumerate(texts):
            ids = listops.encode_listops(text)
            listops.evaluate_listops(text)  # raises on malformed input
            if len(ids) > length:
                raise ValueError(
                    f"ListOps input {i} has {len(ids)} tokens; the model takes "
                    f"at most {length}"
                )
            batch[i, : len(ids)] = ids
        return batch


    def token_labels(self, inputs, data):
        ids = np.asarray(inputs)[0]
        return [data.vocabulary[int(i)] if i else "" for i in ids]


def _config(options):
    from keras_attention.data.listops import listops_config

    fields = {
        key: options.get(key)
        for key in ("min_length", "max_length", "train_size", "validation_size", "test_size")
    }
    return listops_config(options["config"], seed=options.get("data_seed"), **fields)


def _config_max_length(config):
    from keras_attention.data.listops import Listops

    for builder_config in Listops.BUILDER_CONFIGS:
        if builder_config.name == config:
            return builder_config.max_length
    raise ValueError(f"Unknown ListOps config {config!r}; expected 'small' or 'lra'")
