"""The `audio` task: spoken digits (or speakers) from raw waveforms."""

from keras_attention.tasks.base import ClassificationTask
from keras_attention.tasks.base import TaskData
from keras_attention.tasks.base import register_task


@register_task
class AudioTask(ClassificationTask):
    """Audio classification from raw waveforms with `audio_classifier` on
    `spoken_digit` (the Free Spoken Digit Dataset).

    Options: `target` (`"digit"` or `"speaker"`), `split` (`"standard"` or
    `"leave_one_speaker_out"`), `test_speaker`, `num_samples`,
    `num_mel_bins`, `augmentation`, `subsampling`, `normalization`, `speed_perturbation`, `num_freq_masks`,
    `max_freq_mask`, `frequency_warp`, the encoder sizes, `pooling`, `epochs`, `steps`,
    `batch_size`, `learning_rate`, `warmup_steps`.
    """

    name = "audio"
    description = "audio classification from raw waveforms (spoken_digit: digits or speakers)"
    default_dataset = "spoken_digit"
    defaults = {
        "target": "digit",
        "split": "standard",
        "test_speaker": None,
        "num_samples": 8000,
        "num_mel_bins": 64,
        "hidden_dim": 64,
        "num_layers": 2,
        "num_heads": 4,
        "intermediate_dim": 128,
        "dropout": 0.3,
        "pooling": "attention",
        "augmentation": True,
        "subsampling": 2,
        "normalization": "peak",
        "speed_perturbation": 0.0,
        "num_freq_masks": 1,
        "max_freq_mask": None,
        "frequency_warp": 0.0,
        "epochs": 80,
        "steps": None,
        "batch_size": 32,
        "learning_rate": 2e-3,
        "warmup_steps": 100,
    }

    def load(self, dataset, data_dir, options):
        from keras_attention.data.audio import spoken_digit_data

        if dataset != "spoken_digit":
            raise ValueError(
                f"Task 'audio' reads the 'spoken_digit' layout. Received: dataset={dataset!r}"
            )
        data = spoken_digit_data(
            data_dir=data_dir,
            target=options["target"],
            split=options["split"],
            test_speaker=options["test_speaker"],
            num_samples=options["num_samples"],
            batch_size=options["batch_size"],
        )
        return TaskData(
            train=data.train,
            validation=None,
            test=data.test,
            info={
                "num_classes": data.num_classes,
                "num_samples": data.num_samples,
                "sample_rate": data.sample_rate,
                "majority_accuracy": data.majority_accuracy,
                "train_batches": int(data.train.cardinality()),
                "label_names": data.label_names,
            },
            # spoken_digit has one tfds split; the pipeline cuts it.
            train_split="train (recordings 5-49 of each speaker)"
            if options["split"] == "standard"
            else f"train (the other speakers than {options['test_speaker']!r})",
            test_split="train (recordings 0-4 of each speaker)"
            if options["split"] == "standard"
            else f"train (speaker {options['test_speaker']!r})",
        )

    def probe_info(self, options):
        return {
            "num_classes": 10,
            "num_samples": options["num_samples"],
            "sample_rate": 8000,
            "majority_accuracy": 0.0,
            "train_batches": 1,
        }

    def build(self, data, attention, attention_kwargs, options):
        from keras_attention.models import audio_classifier

        info = data.info
        model = audio_classifier(
            info["num_samples"],
            info["num_classes"],
            sample_rate=info["sample_rate"],
            num_mel_bins=options["num_mel_bins"],
            **self.encoder_options(options),
            attention=attention,
            attention_kwargs=attention_kwargs,
            pooling=options["pooling"],
            augmentation=options["augmentation"],
            subsampling=options["subsampling"],
            normalization=options["normalization"],
            speed_perturbation=options["speed_perturbation"],
            num_freq_masks=options["num_freq_masks"],
            max_freq_mask=options["max_freq_mask"],
            frequency_warp=options["frequency_warp"],
            name=f"audio_{attention}",
        )
        return self.compile(model, data, options)
