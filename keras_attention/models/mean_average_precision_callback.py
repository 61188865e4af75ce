"""`MeanAveragePrecisionCallback`: a detector's mAP in the training logs."""

import keras

from keras_attention.arguments import check_int


class MeanAveragePrecisionCallback(keras.callbacks.Callback):
    """Scores a detector on a dataset at the end of every epoch and writes
    the result into the epoch's logs.

    mAP is computed in NumPy over whole images (`evaluate_detector`), so it
    cannot be a compiled Keras metric; this callback puts it where metrics
    go. It adds `"<prefix>map_50"` and `"<prefix>map_50_95"` to the logs
    before the callbacks after it run: `History`, `ModelCheckpoint`,
    `EarlyStopping` and keras-tuner can monitor `"val_map_50"` (pass this
    callback before them).

    Args:
        dataset: iterable of `(images, targets)` batches (see
            `evaluate_detector`), e.g. a validation split.
        num_classes: int, object classes.
        prefix: str, prepended to the log names. Defaults to `"val_"`.
        every: int, score every that many epochs (the logs of the others
            lack the keys).

    Example:

    ```python
    model.fit(train, validation_data=validation, epochs=20,
              callbacks=[MeanAveragePrecisionCallback(validation, 10),
                         keras.callbacks.EarlyStopping("val_map_50", mode="max")])
    ```
    """

    def __init__(self, dataset, num_classes, prefix="val_", every=1):
        super().__init__()
        check_int("MeanAveragePrecisionCallback", "num_classes", num_classes, 1)
        check_int("MeanAveragePrecisionCallback", "every", every, 1)
        self.dataset = dataset
        self.num_classes = int(num_classes)
        self.prefix = str(prefix)
        self.every = int(every)

    def __deepcopy__(self, memo):
        # keras-tuner deep-copies a search's callbacks for every trial; a
        # tf.data pipeline cannot be copied, and need not be: it is shared.
        return type(self)(self.dataset, self.num_classes, self.prefix, self.every)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or (epoch + 1) % self.every:
            return
        from keras_attention.models.object_detector import evaluate_detector

        scores = evaluate_detector(self.model, self.dataset, self.num_classes)
        logs[f"{self.prefix}map_50"] = scores["map_50"]
        logs[f"{self.prefix}map_50_95"] = scores["map_50_95"]
