"""The `enhance` task: noisy spoken digits in, clean speech out."""

from keras_attention.tasks.base import ScheduledTask
from keras_attention.tasks.base import TaskData
from keras_attention.tasks.base import register_task


def _names(value):
    """`"a,b"` -> `("a", "b")` (spaces dropped)."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


@register_task
class EnhancementTask(ScheduledTask):
    """Speech enhancement with `speech_enhancer` on `spoken_digit` recordings
    mixed with noise (`speech_enhancement_data`); trained on the negative
    SI-SDR, reported as SI-SDR (dB) beside the noisy input's.

    Options: `test_speakers` (comma-separated names held out whole),
    `noise_kinds` (comma-separated: `white`, `pink`, `babble`),
    `train_snr_low` / `train_snr_high` (dB), `test_snr_db`,
    `mixtures_per_clip`, `num_samples`, `frequency_attention` (attention
    across the frequency bins of each frame too), the encoder sizes, `epochs`,
    `steps`, `batch_size`, `learning_rate`, `warmup_steps`.
    """

    name = "enhance"
    description = "speech enhancement: noisy waveforms in, clean waveforms out (spoken_digit + noise)"
    default_dataset = "spoken_digit"
    monitor = "si_sdr"
    defaults = {
        "test_speakers": "theo",
        "noise_kinds": "white,pink,babble",
        "train_snr_low": -5.0,
        "train_snr_high": 10.0,
        "test_snr_db": 0.0,
        "mixtures_per_clip": 4,
        "num_samples": 8000,
        "hidden_dim": 128,
        "num_layers": 3,
        "num_heads": 4,
        "intermediate_dim": 256,
        "dropout": 0.1,
        "frequency_attention": False,
        "epochs": 12,
        "steps": None,
        "batch_size": 16,
        "learning_rate": 1e-3,
        "warmup_steps": 250,
    }

    def load(self, dataset, data_dir, options):
        from keras_attention.data.speech_enhancement import speech_enhancement_data

        if dataset != "spoken_digit":
            raise ValueError(
                f"Task 'enhance' mixes noise into the 'spoken_digit' recordings. Received: dataset={dataset!r}"
            )
        data = speech_enhancement_data(
            data_dir=data_dir,
            num_samples=options["num_samples"],
            test_speakers=_names(options["test_speakers"]),
            noise_kinds=_names(options["noise_kinds"]),
            train_snr_db=(options["train_snr_low"], options["train_snr_high"]),
            test_snr_db=options["test_snr_db"],
            mixtures_per_clip=options["mixtures_per_clip"],
            batch_size=options["batch_size"],
        )
        return TaskData(
            train=data.train,
            validation=None,
            test=data.test,
            info={
                "num_samples": data.num_samples,
                "sample_rate": data.sample_rate,
                "train_batches": int(data.train.cardinality()),
                "input_si_sdr": data.input_si_sdr["all"],
            },
            train_split=f"train (speakers {', '.join(data.train_speakers)}, noise at "
            f"{options['train_snr_low']:g} to {options['train_snr_high']:g} dB)",
            test_split=f"train (speakers {', '.join(data.test_speakers)}, noise at {options['test_snr_db']:g} dB)",
        )

    def probe_info(self, options):
        return {
            "num_samples": options["num_samples"],
            "sample_rate": 8000,
            "train_batches": 1,
            "input_si_sdr": 0.0,
        }

    def build(self, data, attention, attention_kwargs, options):
        from keras_attention.models import speech_enhancer

        info = data.info
        model = speech_enhancer(
            info["num_samples"],
            sample_rate=info["sample_rate"],
            **self.encoder_options(options),
            frequency_attention=options["frequency_attention"],
            attention=attention,
            attention_kwargs=attention_kwargs,
            name=f"enhance_{attention}",
        )
        return self.compile(model, data, options)

    def loss(self):
        from keras_attention.models import NegativeScaleInvariantSDR

        return NegativeScaleInvariantSDR()

    def metrics(self):
        from keras_attention.models import ScaleInvariantSDR

        return [ScaleInvariantSDR()]

    def baselines(self, data):
        # SI-SDR of the noisy test inputs: what an enhancer must beat.
        return {"input_si_sdr": data.info["input_si_sdr"]}
