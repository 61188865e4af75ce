"""Translation on FLoRes with `seq2seq`: token accuracy and BLEU per attention
variant.

A pipeline check on small real parallel text: FLoRes (`flores/neen`
Nepali -> English, `flores/sien` Sinhala -> English) has ~2.5k sentence
pairs to train on (its `validation` split) and evaluates on `test`, so the
numbers are far from a translation system's; they show the whole path
(tfds -> vectorisers -> XLA training -> cached greedy and beam decoding ->
BLEU) works and learns more than the trivial baseline. Every variant is
trained with the same recipe and the same data in one process, within a
time budget (`--budget` seconds each).

Reported on the test split: teacher-forced token accuracy (and the
baseline of always answering the most frequent target token), and corpus
BLEU of greedy and beam-search translations (first `--decode` sentences) on
the vectoriser's tokens (lower-cased words; not comparable with sacreBLEU).

    python benchmarks/translation.py
    python benchmarks/translation.py --dataset flores/sien --variants multi_head
"""

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
from budget import default_data_dir  # noqa: E402
from budget import time_budget  # noqa: E402

DEFAULT_VARIANTS = ("multi_head", "linear", "regional")


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="flores/neen")
    parser.add_argument("--data-dir", default=default_data_dir())
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS))
    parser.add_argument("--length", type=int, default=40, help="source and target tokens")
    parser.add_argument("--vocabulary-size", type=int, default=6000)
    parser.add_argument("--hidden-dim", type=int, default=128)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--budget", type=float, default=150.0, help="training seconds per variant")
    parser.add_argument("--decode", type=int, default=200, help="test sentences translated for BLEU")
    parser.add_argument("--beam-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def train_variant(data, variant, args):
    import keras
    import numpy as np

    from keras_attention.models import compile_seq2seq
    from keras_attention.models import corpus_bleu
    from keras_attention.models import seq2seq
    from keras_attention.models import translate
    from keras_attention.models.seq2seq import detokenize

    keras.utils.set_random_seed(args.seed)
    model = seq2seq(
        len(data.source_vocabulary),
        len(data.target_vocabulary),
        data.source_length,
        data.target_length,
        hidden_dim=args.hidden_dim,
        num_layers=args.num_layers,
        num_heads=args.num_heads,
        dropout=args.dropout,
        attention=variant,
    )
    steps = int(data.train.cardinality())
    compile_seq2seq(model, learning_rate=args.learning_rate, warmup_steps=min(200, steps),
                    decay_steps=max(1, args.epochs * steps))
    budget = time_budget(args.budget)
    start = time.perf_counter()
    model.fit(data.train, epochs=args.epochs, callbacks=[budget], verbose=0)
    seconds = time.perf_counter() - start
    accuracy = model.evaluate(data.test, verbose=0, return_dict=True)["accuracy"]
    sources, labels = [], []
    for (source, _), label in data.test:
        sources.append(source.numpy())
        labels.append(label.numpy())
    sources = np.concatenate(sources)[: args.decode]
    labels = np.concatenate(labels)[: args.decode]
    specials = (0, data.start_token_id)
    references = detokenize(labels, data.target_vocabulary, specials, data.end_token_id)
    row = {"variant": variant, "accuracy": accuracy, "seconds": seconds, "stopped": budget.stopped,
           "parameters": model.count_params()}
    # Variants whose decoder self-attention cannot read a key/value cache
    # (e.g. regional windows) decode greedily with a full pass per step;
    # beam search needs the cache.
    try:
        translate(model, sources[:1], data.start_token_id, data.end_token_id, max_length=2)
        cached = True
    except ValueError as error:
        cached = False
        print(f"{variant}: no key/value cache ({str(error).split(': ', 1)[1].split('.')[0]}); "
              "greedy decoding runs the full decoder per step, no beam search", flush=True)
    for beam in (1, args.beam_size) if cached else (1,):
        ids = translate(model, sources, data.start_token_id, data.end_token_id, beam_size=beam,
                        length_penalty=0.6 if beam > 1 else 0.0, use_cache=cached)
        hypotheses = detokenize(ids, data.target_vocabulary, specials, data.end_token_id)
        row[f"bleu_{beam}"] = corpus_bleu(references, hypotheses)
        if beam == 1:
            row["example"] = " ".join(hypotheses[0])
    print(row, flush=True)
    row["reference"] = " ".join(references[0])
    return row


def main(argv=None):
    args = parse_arguments(argv)
    if not os.path.isdir(os.path.join(args.data_dir, *args.dataset.split("/"))):
        print(f"skipped: {args.dataset} not found in {args.data_dir} (set --data-dir or KERAS_ATTENTION_DATA_DIR)")
        return []
    from keras_attention.data import translation_data

    data = translation_data(
        args.dataset, data_dir=args.data_dir, source_length=args.length, target_length=args.length,
        source_vocabulary_size=args.vocabulary_size, target_vocabulary_size=args.vocabulary_size,
        batch_size=args.batch_size, seed=args.seed,
    )
    print(f"{args.dataset}: {int(data.train.cardinality())} training batches of {args.batch_size}, "
          f"vocabularies {len(data.source_vocabulary)} / {len(data.target_vocabulary)}", flush=True)
    rows = [train_variant(data, variant, args) for variant in args.variants]
    beam = args.beam_size
    print()
    print(f"| attention | test token accuracy | BLEU greedy | BLEU beam {beam} | train time (s) | parameters |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        budget = " (time budget)" if row["stopped"] else ""
        beam_bleu = f"{row[f'bleu_{beam}']:.2f}" if f"bleu_{beam}" in row else "- (no cache)"
        print(f"| {row['variant']} | {row['accuracy']:.4f} | {row['bleu_1']:.2f} | {beam_bleu} | "
              f"{row['seconds']:.0f}{budget} | {row['parameters']:,} |")
    print(f"\nmost-frequent-token baseline (test token accuracy): {data.baseline_accuracy:.4f}")
    for row in rows:
        print(f"{row['variant']}: {row['example']!r}  (reference: {row['reference']!r})")
    return rows


if __name__ == "__main__":
    main()
