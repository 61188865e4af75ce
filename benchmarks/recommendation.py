"""Sequential recommendation: next-item HR@10 / NDCG@10 and rating RMSE / MAE
per attention variant, against popularity and matrix factorisation.

Trains `keras_attention.models.sequential_recommender` on per-user,
time-ordered behaviour sequences cut leave-last-out (the last event of every
user is the test target, the one before it the validation target) and ranks
the whole catalogue for every test user. Every variant is trained with the
same recipe on the same data in one process; the baselines are printed
beside them:

- popularity: every item ranked by its training count;
- matrix factorisation: user and item factors with a softmax over items
  (order-blind), trained on the same training events;
- mean rating: the training mean, for RMSE / MAE.

Data (`--dataset`):

- `generated` (default): `keras_attention.data.generate_behaviour`, latent
  tastes over item categories plus planted item-to-item transitions
  (known-learnable, needs nothing);
- `movielens/100k-ratings` (or another MovieLens ratings config) from the
  tfds folder `--data-dir` (default `$KERAS_ATTENTION_DATA_DIR`, else
  `../shared/tfds`). MovieLens may not be redistributed; the script skips
  with a message when it is not there.

    python benchmarks/recommendation.py
    python benchmarks/recommendation.py --dataset movielens/100k-ratings --data-dir ~/tensorflow_datasets
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

DEFAULT_VARIANTS = ("multi_head", "linear", "low_rank", "regional")


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="generated")
    parser.add_argument("--data-dir", default=default_data_dir())
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS))
    parser.add_argument("--users", type=int, default=2000, help="generated data: users")
    parser.add_argument("--items", type=int, default=1000, help="generated data: items")
    parser.add_argument("--sequence-length", type=int, default=30)
    parser.add_argument("--hidden-dim", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--num-heads", type=int, default=2)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--rating-weight", type=float, default=0.5)
    parser.add_argument("--budget", type=float, default=150.0, help="training seconds per variant")
    parser.add_argument("--mf-epochs", type=int, default=10)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def load(args):
    """The interactions, or `None` (with a message) when they are absent."""
    from keras_attention.data import generate_behaviour
    from keras_attention.data import movielens_interactions

    if args.dataset == "generated":
        return generate_behaviour(num_users=args.users, num_items=args.items, seed=args.seed)
    if not os.path.isdir(os.path.join(args.data_dir, args.dataset.split("/")[0])):
        print(f"skipped: {args.dataset} not found in {args.data_dir} (MovieLens is not "
              "redistributable: prepare it with tfds and pass --data-dir)")
        return None
    return movielens_interactions(args.dataset, data_dir=args.data_dir)


def train_variant(data, variant, args):
    """Trains one variant; returns the row's numbers."""
    import keras

    from keras_attention.models import compile_sequential_recommender
    from keras_attention.models import ranking_metrics
    from keras_attention.models import rating_metrics
    from keras_attention.models import sequential_recommender

    keras.utils.set_random_seed(args.seed)
    model = sequential_recommender(
        data.num_items,
        data.sequence_length,
        hidden_dim=args.hidden_dim,
        num_layers=args.num_layers,
        num_heads=args.num_heads,
        dropout=args.dropout,
        attention=variant,
    )
    steps = len(data.train) // args.batch_size
    compile_sequential_recommender(
        model,
        learning_rate=args.learning_rate,
        rating_weight=args.rating_weight,
        top_k=args.k,
        warmup_steps=min(200, steps),
        decay_steps=max(1, args.epochs * steps),
    )
    budget = time_budget(args.budget)
    stopping = keras.callbacks.EarlyStopping(
        monitor="val_next_item_hit_rate", mode="max", patience=1, restore_best_weights=True
    )
    start = time.perf_counter()
    model.fit(
        data.train.dataset(args.batch_size, shuffle=True, seed=args.seed),
        validation_data=data.validation.dataset(1024),
        epochs=args.epochs,
        callbacks=[budget, stopping],
        verbose=2,
    )
    seconds = time.perf_counter() - start
    out = model.predict(data.test.dataset(1024), verbose=0)
    row = {"model": f"sequential_recommender ({variant})", "seconds": seconds, "stopped": budget.stopped}
    row.update(ranking_metrics(out["next_item"], data.test.target, k=args.k, seed=args.seed))
    row.update(rating_metrics(out["rating"], data.test.rating))
    return row


def baselines(data, args):
    import numpy as np

    from keras_attention.models import fit_matrix_factorization
    from keras_attention.models import popularity_scores
    from keras_attention.models import ranking_metrics
    from keras_attention.models import rating_metrics

    rows = []
    popular = {"model": "popularity", "seconds": 0.0, "stopped": False}
    popular.update(ranking_metrics(popularity_scores(data.item_counts, len(data.test)), data.test.target, k=args.k, seed=args.seed))
    popular.update(rating_metrics(np.full(len(data.test), data.train.rating.mean()), data.test.rating))
    rows.append(popular)
    start = time.perf_counter()
    mf = fit_matrix_factorization(data, epochs=args.mf_epochs, seed=args.seed)
    factorised = {"model": "matrix factorisation", "seconds": time.perf_counter() - start, "stopped": False}
    factorised.update(ranking_metrics(mf.predict(data.test.user, batch_size=1024, verbose=0), data.test.target, k=args.k, seed=args.seed))
    rows.append(factorised)
    return rows


def main(argv=None):
    args = parse_arguments(argv)
    interactions = load(args)
    if interactions is None:
        return []
    from keras_attention.data import sequential_recommendation_data

    data = sequential_recommendation_data(interactions, sequence_length=args.sequence_length)
    print(f"{args.dataset}: {data.num_users} users, {data.num_items} items, {len(data.train)} training "
          f"examples, {len(data.test)} test users", flush=True)
    rows = baselines(data, args)
    for variant in args.variants:
        rows.append(train_variant(data, variant, args))
    k = args.k
    print()
    print(f"| model | HR@{k} | NDCG@{k} | rating RMSE | rating MAE | train time (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        rmse = f"{row['rmse']:.3f}" if "rmse" in row else "-"
        mae = f"{row['mae']:.3f}" if "mae" in row else "-"
        budget = " (time budget)" if row["stopped"] else ""
        print(f"| {row['model']} | {row[f'hr@{k}']:.4f} | {row[f'ndcg@{k}']:.4f} | {rmse} | {mae} | "
              f"{row['seconds']:.0f}{budget} |")
    print("\n(the popularity row's rating columns are the training mean rating)")
    return rows


if __name__ == "__main__":
    main()
