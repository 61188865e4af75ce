"""The `detect` task: MNIST digits on canvases in, boxes and labels out."""

from keras_attention.tasks.base import ScheduledTask
from keras_attention.tasks.base import TaskData
from keras_attention.tasks.base import register_task


def _packed(ds):
    """`(images, {"boxes", "labels"})` batches -> `(images, (batch, M, 5))`."""
    from keras_attention.models import pack_detection_targets

    return None if ds is None else ds.map(lambda x, t: (x, pack_detection_targets(t["boxes"], t["labels"])))


def _task_data(data, options, train_split, validation_split, test_split):
    """A `DetectionData` as the task's `TaskData` (targets packed)."""
    return TaskData(
        train=_packed(data.train),
        validation=_packed(data.validation),
        test=_packed(data.test),
        info={
            "canvas_size": data.canvas_size,
            "num_classes": data.num_classes,
            "max_objects": data.max_objects,
            "channels": data.channels,
            "train_batches": data.train_size // options["batch_size"],
        },
        train_split=train_split,
        validation_split=validation_split,
        test_split=test_split,
    )


@register_task
class DetectionTask(ScheduledTask):
    """Object detection with `object_detector`; trained on
    `SetPredictionLoss`, reported as COCO mAP@0.5 (`map_50`) and
    mAP@[.5:.95] (`map_50_95`); the validation mAP is written into every
    epoch's logs (`val_map_50`), which `tune` ranks by.

    The default dataset, `mnist_detection`, is generated from the `mnist`
    in `--data-dir` into a temporary folder (canvases of real MNIST
    digits); a share of its train canvases (`validation_fraction`) is held
    out for validation. Any other tfds dataset in the VOC/COCO layout
    (`--dataset voc/2007`, `coco/2017`, prepared in `--data-dir`) is read
    by `detection_data`: images resized to `image_size`, at most
    `max_objects` objects, the splits `train_split`, `validation_split`
    (empty: none) and `test_split`.

    Options: `config` (`mnist_detection`'s: `default`, 64 x 64 canvases
    with 1-4 digits; `small`, 32 x 32 with 1-2), `validation_fraction`,
    `image_size`, `max_objects`, `train_split`, `validation_split`,
    `test_split`, `num_queries`, `patch_size`, `num_decoder_layers`, the
    encoder sizes (`num_layers` is the encoder's), `epochs`, `steps`,
    `batch_size`, `learning_rate`, `warmup_steps`.
    """

    name = "detect"
    description = "object detection: boxes and labels of MNIST digits on canvases (mnist_detection from mnist)"
    default_dataset = "mnist_detection"
    monitor = "map_50"
    defaults = {
        "config": "default",
        "validation_fraction": 0.1,
        "image_size": 128,
        "max_objects": 32,
        "train_split": "train",
        "validation_split": "validation",
        "test_split": "test",
        "num_queries": 10,
        "patch_size": 8,
        "hidden_dim": 128,
        "num_layers": 2,
        "num_decoder_layers": 2,
        "num_heads": 4,
        "intermediate_dim": 256,
        "dropout": 0.0,
        "epochs": 30,
        "steps": None,
        "batch_size": 32,
        "learning_rate": 5e-4,
        "warmup_steps": 200,
    }

    def load(self, dataset, data_dir, options):
        import atexit
        import shutil
        import tempfile

        from keras_attention.data.mnist_detection import MnistDetection
        from keras_attention.data.mnist_detection import mnist_detection_data

        if dataset not in ("mnist_detection", "mnist"):
            return self._load_layout(dataset, data_dir, options)
        configs = {c.name: c for c in MnistDetection.BUILDER_CONFIGS}
        if options["config"] not in configs:
            raise ValueError(
                f"Task 'detect': option 'config' must be one of {sorted(configs)}. Received: config={options['config']!r}"
            )
        generated = tempfile.mkdtemp(prefix="keras-attention-mnist-detection-")
        atexit.register(shutil.rmtree, generated, True)
        data = mnist_detection_data(
            generated,
            mnist_data_dir=data_dir,
            config=options["config"],
            max_objects=configs[options["config"]].max_digits,
            batch_size=options["batch_size"],
            validation_fraction=options["validation_fraction"],
        )
        return _task_data(
            data,
            options,
            f"mnist_detection/{options['config']} train[:{data.train_size}]",
            f"mnist_detection/{options['config']} train[{data.train_size}:]" if data.validation_size else None,
            f"mnist_detection/{options['config']} test",
        )

    def _load_layout(self, dataset, data_dir, options):
        """A tfds dataset in the VOC/COCO layout (`detection_data`)."""
        from keras_attention.data.detection import detection_data

        data = detection_data(
            dataset,
            data_dir,
            image_size=options["image_size"],
            max_objects=options["max_objects"],
            batch_size=options["batch_size"],
            train_split=options["train_split"],
            validation_split=options["validation_split"] or None,
            test_split=options["test_split"],
        )
        return _task_data(
            data, options, options["train_split"], options["validation_split"] or None, options["test_split"]
        )

    def probe_info(self, options):
        from keras_attention.data.mnist_detection import MnistDetection

        configs = {c.name: c for c in MnistDetection.BUILDER_CONFIGS}
        config = configs.get(options["config"], configs["default"])
        return {
            "canvas_size": config.canvas_size,
            "num_classes": 10,
            "max_objects": config.max_digits,
            "channels": 1,
            "train_batches": 1,
        }

    def build(self, data, attention, attention_kwargs, options):
        from keras_attention.models import object_detector

        info = data.info
        if options["num_queries"] < info["max_objects"]:
            raise ValueError(
                f"Task 'detect': option 'num_queries' must be at least the most objects an image holds "
                f"({info['max_objects']}). Received: num_queries={options['num_queries']}"
            )
        model = object_detector(
            info["canvas_size"],
            info["num_classes"],
            channels=info["channels"],
            num_queries=options["num_queries"],
            patch_size=options["patch_size"],
            hidden_dim=options["hidden_dim"],
            num_encoder_layers=options["num_layers"],
            num_decoder_layers=options["num_decoder_layers"],
            num_heads=options["num_heads"],
            intermediate_dim=options["intermediate_dim"],
            dropout=options["dropout"],
            attention=attention,
            attention_kwargs=attention_kwargs,
            name=f"detect_{attention}",
        )
        return self.compile(model, data, options)

    def compile(self, model, data, options):
        from keras_attention.models import compile_object_detector

        return compile_object_detector(
            model,
            learning_rate=options["learning_rate"],
            warmup_steps=options["warmup_steps"],
            decay_steps=self.decay_steps(data, options),
        )

    def loss(self):
        from keras_attention.models import SetPredictionLoss

        return SetPredictionLoss()

    def metrics(self):
        return []

    def callbacks(self, data, validation):
        from keras_attention.models.mean_average_precision_callback import MeanAveragePrecisionCallback

        if validation is None:
            return []
        return [MeanAveragePrecisionCallback(validation, data.info["num_classes"])]

    def evaluate(self, model, dataset, data):
        from keras_attention.models import evaluate_detector

        results = super().evaluate(model, dataset, data)
        scores = evaluate_detector(model, dataset, data.info["num_classes"])
        results.update(map_50=scores["map_50"], map_50_95=scores["map_50_95"])
        return results
