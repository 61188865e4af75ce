"""The `text` task: tfds text classification + `text_classifier`."""

import numpy as np

from keras_attention.tasks.base import ClassificationTask
from keras_attention.tasks.base import TaskData
from keras_attention.tasks.base import register_task


@register_task
class TextTask(ClassificationTask):
    """Text classification on a tensorflow-datasets dataset (default
    `glue/sst2`), words (and optionally n-grams) from a `TextVectorization`
    adapted on the training split. The saved and exported model takes raw
    strings.

    Options: `sequence_length`, `vocabulary_size`, `ngrams`, `text_key`,
    `label_key`, `train_split`, `validation_split`, `test_split`, and the
    `text_classifier` sizes, `embedding_dropout`, `pooling`, `epochs`,
    `steps`, `batch_size`,
    `learning_rate`, `warmup_steps`.
    """

    name = "text"
    description = "text classification (tfds, e.g. glue/sst2, imdb_reviews, ag_news_subset); raw strings in"
    default_dataset = "glue/sst2"
    defaults = {
        "sequence_length": 64,
        "vocabulary_size": 20000,
        "ngrams": None,
        "text_key": None,
        "label_key": "label",
        "train_split": "train",
        "validation_split": "validation",
        "test_split": None,
        "hidden_dim": 64,
        "num_layers": 2,
        "num_heads": 4,
        "intermediate_dim": 128,
        "dropout": 0.2,
        "embedding_dropout": 0.5,
        "pooling": "mean",
        "epochs": 4,
        "steps": None,
        "batch_size": 64,
        "learning_rate": 1e-3,
        "warmup_steps": 200,
    }

    def load(self, dataset, data_dir, options):
        from keras_attention.data.text import text_classification_data

        data = text_classification_data(
            dataset,
            data_dir=data_dir,
            text_key=options["text_key"],
            label_key=options["label_key"],
            train_split=options["train_split"],
            validation_split=options["validation_split"],
            test_split=options["test_split"],
            sequence_length=options["sequence_length"],
            vocabulary_size=options["vocabulary_size"],
            ngrams=options["ngrams"],
            batch_size=options["batch_size"],
        )
        test = data.test if data.test is not None else data.validation
        return TaskData(
            train=data.train,
            validation=data.validation,
            test=test,
            info={
                "num_classes": data.num_classes,
                "vocabulary_size": len(data.vocabulary),
                "sequence_length": data.sequence_length,
                "majority_accuracy": data.majority_accuracy,
                "train_batches": int(data.train.cardinality()),
                "label_names": data.label_names,
            },
            vocabulary=data.vocabulary,
            preprocessor=data.vectorizer,
            raw_test=data.raw_evaluation,
            train_split=options["train_split"],
            validation_split=options["validation_split"],
            test_split=options["test_split"] or options["validation_split"],
        )

    def probe_info(self, options):
        return {
            "num_classes": 2,
            "vocabulary_size": options["vocabulary_size"],
            "sequence_length": options["sequence_length"],
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
            embedding_dropout=options["embedding_dropout"],
            name=f"text_{attention}",
        )
        return self.compile(model, data, options)


    def encode(self, texts, options, vocabulary):
        return np.array(texts, dtype=object)


    def token_labels(self, inputs, data):
        ids = np.asarray(inputs)[0]
        return [data.vocabulary[int(i)] if i else "" for i in ids]
