"""Speech enhancement on real recordings: SI-SDR improvement on unseen speakers.

    python benchmarks/speech_enhancement.py [--data-dir ../shared/tfds] [--minutes 12]

Trains `speech_enhancer` (default sizes, `multi_head` attention, XLA) on
`speech_enhancement_data`: the Free Spoken Digit Dataset's recordings of every
speaker but the held-out one(s), each mixed with white, pink or babble noise
at SNRs drawn from [-5, 10] dB; evaluates on the held-out speakers'
recordings mixed with each noise at exactly `--test-snr` dB (0 by default).
Training stops after `--epochs` or `--minutes`, whichever comes first
(cosine decay planned over `--epochs`). Nothing is chosen on the test set.

Prints one table: SI-SDR of the noisy inputs, of the enhanced outputs, and
the improvement, then STOI and PESQ (narrow-band) of both, per noise kind
and overall (`keras_attention.models.speech_quality`; each averages the
mixtures where it is defined: PESQ where it finds speech, STOI where the
clean clip holds at least 384 ms of speech). Skips (exit 0) with a message
when the data folder has no `spoken_digit`.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from budget import default_data_dir  # noqa: E402
from budget import time_budget  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=default_data_dir())
    parser.add_argument("--minutes", type=float, default=12.0, help="training time budget")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--test-snr", type=float, default=0.0)
    parser.add_argument("--attention", default="multi_head")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--frequency-attention", action="store_true", help="attention across frequency bins too")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not os.path.isdir(os.path.join(args.data_dir, "spoken_digit")):
        print(f"skipped: spoken_digit not in {args.data_dir} (pass --data-dir with a prepared tfds folder)")
        return 0

    import keras
    import numpy as np

    from keras_attention.data import speech_enhancement_data
    from keras_attention.models import compile_speech_enhancer
    from keras_attention.models import perceptual_speech_quality
    from keras_attention.models import short_time_objective_intelligibility
    from keras_attention.models import scale_invariant_sdr
    from keras_attention.models import speech_enhancer

    keras.utils.set_random_seed(args.seed)
    start = time.perf_counter()
    data = speech_enhancement_data(
        args.data_dir, test_snr_db=args.test_snr, batch_size=args.batch_size, seed=args.seed
    )
    loaded = time.perf_counter() - start
    model = speech_enhancer(
        data.num_samples, sample_rate=data.sample_rate, attention=args.attention,
        frequency_attention=args.frequency_attention,
    )
    steps = data.num_train // args.batch_size
    compile_speech_enhancer(
        model, learning_rate=args.learning_rate, warmup_steps=steps // 2, decay_steps=steps * args.epochs
    )
    budget = time_budget(60 * args.minutes)
    start = time.perf_counter()
    history = model.fit(data.train, epochs=args.epochs, callbacks=[budget], verbose=2)
    trained = time.perf_counter() - start

    noisy, clean = (np.concatenate(parts) for parts in zip(*[(n.numpy(), c.numpy()) for n, c in data.test]))
    enhanced = model.predict(noisy, batch_size=64, verbose=0)
    before = keras.ops.convert_to_numpy(scale_invariant_sdr(clean, noisy))
    after = keras.ops.convert_to_numpy(scale_invariant_sdr(clean, enhanced))
    kinds = np.tile(np.arange(len(data.noise_kinds)), len(noisy) // len(data.noise_kinds))
    print(
        f"\nspeech_enhancer ({args.attention}{', frequency attention' if args.frequency_attention else ''}, "
        f"{model.count_params():,} parameters): "
        f"{len(history.history['loss'])} epoch(s) of {steps} steps in {trained / 60:.1f} min"
        f"{' (stopped by the time budget)' if budget.stopped else ''}; data loaded in {loaded:.0f} s; "
        f"train speakers {data.train_speakers}, test speakers {data.test_speakers} "
        f"({len(noisy)} mixtures at {args.test_snr:g} dB)\n"
    )
    rate = data.sample_rate
    stoi = (short_time_objective_intelligibility(clean, noisy, rate), short_time_objective_intelligibility(clean, enhanced, rate))
    pesq = (perceptual_speech_quality(clean, noisy, rate), perceptual_speech_quality(clean, enhanced, rate))
    print(f"STOI is defined for {int(np.isfinite(stoi[0]).sum())} of {len(noisy)} mixtures, PESQ for "
          f"{int(np.isfinite(pesq[0]).sum())} (noisy) and {int(np.isfinite(pesq[1]).sum())} (enhanced)\n")
    print("| noise | input SI-SDR (dB) | enhanced SI-SDR (dB) | improvement (dB) | input STOI | enhanced STOI "
          "| input PESQ | enhanced PESQ |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, chosen in [*((kind, kinds == index) for index, kind in enumerate(data.noise_kinds)), ("all", kinds >= 0)]:
        print(f"| {name} | {before[chosen].mean():.2f} | {after[chosen].mean():.2f} | "
              f"{after[chosen].mean() - before[chosen].mean():.2f} | {np.nanmean(stoi[0][chosen]):.3f} | "
              f"{np.nanmean(stoi[1][chosen]):.3f} | {np.nanmean(pesq[0][chosen]):.2f} | {np.nanmean(pesq[1][chosen]):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
