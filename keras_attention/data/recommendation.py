"""Behaviour sequences for sequential recommendation.

Two sources, one pipeline:

- `generate_behaviour`: a generated dataset with planted, known-learnable
  structure (latent user tastes over item categories, popularity within a
  category, item-to-item transitions, ratings that follow taste and item
  quality), so a recommender can be trained and checked offline.
- `movielens_interactions`: `movielens/100k-ratings` (or any tfds
  MovieLens ratings config) from a tfds `data_dir`. MovieLens may not be
  redistributed, so nothing here downloads it unless tfds is allowed to.

Both give `Interactions`; `sequential_recommendation_data` orders each
user's interactions in time and cuts them leave-last-out: the last item of
every user is the test target, the one before it the validation target,
and every earlier position a training target (the history being the items
before it).
"""

import dataclasses

import numpy as np

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_int
from keras_attention.data.feeding import prefetched
from keras_attention.data.prepared import load_prepared

PAD = 0


@dataclasses.dataclass
class Interactions:
    """User-item interactions, one row per event.

    Attributes:
        user: int32 `(n,)`, user indices in `[0, num_users)`.
        item: int32 `(n,)`, item ids in `[1, num_items]` (0 is padding).
        rating: float32 `(n,)`.
        timestamp: int64 `(n,)`, the order of a user's events.
        num_users: int.
        num_items: int.
        item_names: list of `num_items + 1` str (index 0 is padding).
    """

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    num_users: int
    num_items: int
    item_names: list






def generate_behaviour(
    num_users=2000,
    num_items=1000,
    num_categories=20,
    min_length=10,
    max_length=60,
    transition_probability=0.5,
    taste_concentration=0.3,
    seed=0,
):
    """A generated behaviour dataset with planted sequential structure.

    Items fall into `num_categories` equal categories and have a Zipf
    popularity within their category and a quality. Every user has a taste
    (a Dirichlet draw over categories, concentrated when
    `taste_concentration` is small). Every item has one successor item. A
    user's sequence starts from their taste; each next item is, with
    probability `transition_probability`, the successor of the previous item
    (sequential signal only an order-aware model can use), otherwise a draw
    of a category from the taste and of an item from that category's
    popularity (the signal matrix factorisation captures). Ratings on 1-5
    are `3 + quality + taste affinity + noise`, rounded and clipped.

    Args:
        num_users, num_items, num_categories: sizes
            (`num_items >= num_categories`).
        min_length, max_length: the range of events per user
            (`3 <= min_length <= max_length`).
        transition_probability: float in `[0, 1]`.
        taste_concentration: float > 0, the Dirichlet concentration.
        seed: int, the generator seed (same seed, same data).

    Returns:
        `Interactions`.

    Example:

    >>> data = generate_behaviour(num_users=50, num_items=100, seed=1)
    >>> int(data.item.min()) >= 1 and int(data.item.max()) <= 100
    True
    """
    function = "generate_behaviour"
    for argument, value in (
        ("num_users", num_users),
        ("num_items", num_items),
        ("num_categories", num_categories),
        ("min_length", min_length),
        ("max_length", max_length),
    ):
        check_int(function, argument, value, minimum=1)
    if num_items < num_categories:
        raise argument_error(function, "num_items", f"must be >= num_categories ({num_categories})", f"num_items={num_items}")
    if not 3 <= min_length <= max_length:
        raise argument_error(
            function, "min_length", "must satisfy 3 <= min_length <= max_length",
            f"min_length={min_length}, max_length={max_length}",
        )
    if not 0.0 <= transition_probability <= 1.0:
        raise argument_error(function, "transition_probability", "must be in [0, 1]", f"{transition_probability!r}")
    if not taste_concentration > 0:
        raise argument_error(function, "taste_concentration", "must be > 0", f"{taste_concentration!r}")
    rng = np.random.default_rng(seed)
    # Items 1..num_items; category of item i is (i - 1) % num_categories.
    items = np.arange(1, num_items + 1)
    category = (items - 1) % num_categories
    members = [items[category == c] for c in range(num_categories)]
    popularity = []
    for group in members:
        weights = 1.0 / np.arange(1, len(group) + 1)
        rng.shuffle(weights)
        popularity.append(weights / weights.sum())
    quality = rng.normal(0.0, 0.6, num_items + 1)
    successor = np.zeros(num_items + 1, dtype=np.int64)
    successor[1:] = rng.integers(1, num_items + 1, num_items)
    taste = rng.dirichlet(np.full(num_categories, taste_concentration), num_users)

    def draw(u):
        c = rng.choice(num_categories, p=taste[u])
        return rng.choice(members[c], p=popularity[c])

    users, events, ratings, times = [], [], [], []
    for u in range(num_users):
        length = int(rng.integers(min_length, max_length + 1))
        sequence = [draw(u)]
        for _ in range(length - 1):
            if rng.random() < transition_probability:
                sequence.append(successor[sequence[-1]])
            else:
                sequence.append(draw(u))
        sequence = np.asarray(sequence)
        affinity = np.clip(taste[u, category[sequence - 1]] * num_categories - 1.0, -1.0, 1.5)
        rating = 3.0 + quality[sequence] + affinity + rng.normal(0.0, 0.4, length)
        users.append(np.full(length, u))
        events.append(sequence)
        ratings.append(np.clip(np.round(rating), 1, 5))
        times.append(np.arange(length))
    return Interactions(
        user=np.concatenate(users).astype("int32"),
        item=np.concatenate(events).astype("int32"),
        rating=np.concatenate(ratings).astype("float32"),
        timestamp=np.concatenate(times).astype("int64"),
        num_users=num_users,
        num_items=num_items,
        item_names=["[PAD]"] + [f"item_{i}" for i in items],
    )


def movielens_interactions(name="movielens/100k-ratings", data_dir=None, split="train"):
    """MovieLens ratings from tfds as `Interactions`.

    Users and movies are renumbered densely (movies `1..num_items`, sorted
    by their MovieLens id) and the events keep their timestamps.

    Args:
        name: a tfds MovieLens ratings config, e.g.
            `"movielens/100k-ratings"` or `"movielens/1m-ratings"`.
        data_dir: the tfds data directory holding it (MovieLens is not
            redistributable; prepare it with tfds where that is allowed).
        split: the tfds split (MovieLens has only `train`).

    Returns:
        `Interactions`.
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    if "ratings" not in name:
        raise argument_error("movielens_interactions", "name", "must be a MovieLens ratings config (e.g. 'movielens/100k-ratings')", f"name={name!r}")
    ds = load_prepared("`movielens_interactions`", name, split=split, data_dir=data_dir)
    ds = ds.map(
        lambda ex: (ex["user_id"], ex["movie_id"], tf.cast(ex["user_rating"], tf.float32), tf.cast(ex["timestamp"], tf.int64))
    ).batch(8192)
    columns = [[], [], [], []]
    for batch in tfds.as_numpy(ds):
        for column, values in zip(columns, batch):
            column.append(values)
    user_ids, movie_ids, rating, timestamp = (np.concatenate(c) if c else np.zeros(0) for c in columns)
    if len(user_ids) == 0:
        raise ValueError(f"`movielens_interactions`: {name!r} split {split!r} is empty")
    users, user = np.unique(user_ids, return_inverse=True)
    movies, item = np.unique(movie_ids, return_inverse=True)
    return Interactions(
        user=user.astype("int32"),
        item=(item + 1).astype("int32"),
        rating=rating.astype("float32"),
        timestamp=timestamp.astype("int64"),
        num_users=len(users),
        num_items=len(movies),
        item_names=["[PAD]"] + [m.decode() if isinstance(m, bytes) else str(m) for m in movies],
    )


@dataclasses.dataclass
class RecommendationSplit:
    """One split: a history and a target per example.

    Attributes:
        history: int32 `(n, sequence_length)`, the items before the target,
            most recent last, left-padded with 0.
        target: int32 `(n,)`, the next item.
        rating: float32 `(n,)`, the user's rating of the target.
        user: int32 `(n,)`.
    """

    history: np.ndarray
    target: np.ndarray
    rating: np.ndarray
    user: np.ndarray

    def __len__(self):
        return len(self.target)

    def dataset(self, batch_size, shuffle=False, seed=0, drop_remainder=None):
        """A `tf.data.Dataset` of `({"history", "target_item"}, {"next_item",
        "rating"})` batches (what `sequential_recommender` takes).

        `drop_remainder` defaults to `shuffle` (static shapes for training).
        """
        import tensorflow as tf

        ds = tf.data.Dataset.from_tensor_slices(
            ({"history": self.history, "target_item": self.target}, {"next_item": self.target, "rating": self.rating})
        )
        if shuffle:
            ds = ds.shuffle(len(self), seed=seed, reshuffle_each_iteration=True)
        drop = shuffle if drop_remainder is None else drop_remainder
        return prefetched(ds.batch(batch_size, drop_remainder=drop))


@dataclasses.dataclass
class SequentialRecommendationData:
    """What `sequential_recommendation_data` returns.

    Attributes:
        train, validation, test: `RecommendationSplit`s (one validation and
            one test example per user: the second-to-last and last events).
        num_items, num_users: int.
        sequence_length: int.
        item_counts: int64 `(num_items + 1,)`, training-split counts (the
            popularity baseline).
        train_interactions: `(users, items)` int32 arrays of every training
            event (the matrix-factorisation baseline's data).
        item_names: list of str.
    """

    train: RecommendationSplit
    validation: RecommendationSplit
    test: RecommendationSplit
    num_items: int
    num_users: int
    sequence_length: int
    item_counts: np.ndarray
    train_interactions: tuple
    item_names: list


def _window(sequence, end, length):
    history = np.zeros(length, dtype="int32")
    start = max(0, end - length)
    part = sequence[start:end]
    history[length - len(part):] = part
    return history


def sequential_recommendation_data(interactions, sequence_length=50, min_events=3):
    """Time-ordered per-user sequences, cut leave-last-out.

    For a user with events `e_1 .. e_L` (ordered by timestamp, ties kept in
    input order): the test example predicts `e_L` from `e_1 .. e_{L-1}`,
    the validation example `e_{L-1}` from `e_1 .. e_{L-2}`, and the training
    examples `e_t` from `e_1 .. e_{t-1}` for `t = 2 .. L-2`. Each history
    keeps its last `sequence_length` events, left-padded with 0. Users with
    fewer than `min_events` events are left out.

    Args:
        interactions: `Interactions` (`generate_behaviour()`,
            `movielens_interactions()`).
        sequence_length: int, the history length.
        min_events: int >= 3.

    Returns:
        `SequentialRecommendationData`.

    Example:

    >>> data = sequential_recommendation_data(
    ...     generate_behaviour(num_users=20, num_items=50), sequence_length=8)
    >>> len(data.test), data.test.history.shape
    (20, (20, 8))
    """
    function = "sequential_recommendation_data"
    if not isinstance(interactions, Interactions):
        raise argument_error(function, "interactions", "must be `Interactions` (generate_behaviour() or movielens_interactions())", type(interactions).__name__)
    check_int(function, "sequence_length", sequence_length, minimum=1)
    check_int(function, "min_events", min_events, minimum=3)
    order = np.lexsort((np.arange(len(interactions.user)), interactions.timestamp, interactions.user))
    user = interactions.user[order]
    item = interactions.item[order]
    rating = interactions.rating[order]
    bounds = np.flatnonzero(np.diff(user)) + 1
    splits = {"train": [], "validation": [], "test": []}
    train_users, train_items = [], []
    for start, end in zip(np.r_[0, bounds], np.r_[bounds, len(user)]):
        length = end - start
        if length < min_events:
            continue
        u, sequence, ratings = user[start], item[start:end], rating[start:end]
        for t in range(1, length):
            split = "test" if t == length - 1 else "validation" if t == length - 2 else "train"
            splits[split].append((_window(sequence, t, sequence_length), sequence[t], ratings[t], u))
        train_users.append(np.full(length - 2, u))
        train_items.append(sequence[: length - 2])
    if not splits["test"]:
        raise argument_error(function, "interactions", f"must have a user with at least min_events={min_events} events", "none")

    def stack(rows):
        if not rows:
            empty = np.zeros((0,), "int32")
            return RecommendationSplit(np.zeros((0, sequence_length), "int32"), empty, empty.astype("float32"), empty)
        history, target, ratings, users = zip(*rows)
        return RecommendationSplit(
            np.stack(history).astype("int32"),
            np.asarray(target, "int32"),
            np.asarray(ratings, "float32"),
            np.asarray(users, "int32"),
        )

    train_items = np.concatenate(train_items).astype("int32")
    return SequentialRecommendationData(
        train=stack(splits["train"]),
        validation=stack(splits["validation"]),
        test=stack(splits["test"]),
        num_items=interactions.num_items,
        num_users=interactions.num_users,
        sequence_length=sequence_length,
        item_counts=np.bincount(train_items, minlength=interactions.num_items + 1).astype("int64"),
        train_interactions=(np.concatenate(train_users).astype("int32"), train_items),
        item_names=interactions.item_names,
    )
