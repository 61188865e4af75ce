"""Behaviour data: the generated dataset, MovieLens through tfds, the split."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_attention.data.recommendation import Interactions
from keras_attention.data.recommendation import generate_behaviour
from keras_attention.data.recommendation import movielens_interactions
from keras_attention.data.recommendation import sequential_recommendation_data


def test_generated_data_is_seeded_and_in_range():
    a = generate_behaviour(num_users=30, num_items=40, num_categories=4, min_length=5, max_length=9, seed=3)
    b = generate_behaviour(num_users=30, num_items=40, num_categories=4, min_length=5, max_length=9, seed=3)
    c = generate_behaviour(num_users=30, num_items=40, num_categories=4, min_length=5, max_length=9, seed=4)
    np.testing.assert_array_equal(a.item, b.item)
    assert not np.array_equal(a.item, c.item) or not np.array_equal(a.user, c.user)
    assert a.item.min() >= 1 and a.item.max() <= 40
    assert set(np.unique(a.rating)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    lengths = np.bincount(a.user)
    assert lengths.min() >= 5 and lengths.max() <= 9 and len(lengths) == 30
    assert len(a.item_names) == 41 and a.item_names[0] == "[PAD]"


def _next_item_accuracy(interactions, fit_on):
    """How often the most common follower of an item (learned on `fit_on`
    users) is the actual next item."""
    pairs = {}
    for u in range(interactions.num_users):
        seq = interactions.item[interactions.user == u]
        for a, b in zip(seq[:-1], seq[1:]):
            if fit_on(u):
                pairs.setdefault(a, []).append(b)
    follower = {a: np.bincount(bs).argmax() for a, bs in pairs.items()}
    hits = total = 0
    for u in range(interactions.num_users):
        if fit_on(u):
            continue
        seq = interactions.item[interactions.user == u]
        for a, b in zip(seq[:-1], seq[1:]):
            total += 1
            hits += follower.get(a) == b
    return hits / total


def test_planted_transitions_are_learnable_and_switchable():
    kwargs = dict(num_users=400, num_items=60, num_categories=6, min_length=10, max_length=20, seed=0)
    with_transitions = generate_behaviour(transition_probability=0.6, **kwargs)
    without = generate_behaviour(transition_probability=0.0, **kwargs)
    # Held-out users: the planted successor is the next item ~60% of the time.
    assert _next_item_accuracy(with_transitions, lambda u: u < 300) > 0.55
    assert _next_item_accuracy(without, lambda u: u < 300) < 0.2


def test_tastes_concentrate_users_on_few_categories():
    data = generate_behaviour(num_users=200, num_items=100, num_categories=10, transition_probability=0.0, taste_concentration=0.1)
    top_share = []
    for u in range(200):
        categories = (data.item[data.user == u] - 1) % 10
        top_share.append(np.bincount(categories, minlength=10).max() / len(categories))
    assert np.mean(top_share) > 0.5  # uniform tastes would give ~0.2


def _tiny():
    # User 7: events out of time order; user 2: too short (2 events).
    return Interactions(
        user=np.array([7, 7, 2, 7, 7, 2, 7], "int32"),
        item=np.array([3, 5, 9, 4, 6, 8, 1], "int32"),
        rating=np.array([1, 2, 5, 3, 4, 5, 5], "float32"),
        timestamp=np.array([20, 10, 1, 30, 50, 2, 40], "int64"),
        num_users=8,
        num_items=9,
        item_names=[str(i) for i in range(10)],
    )


def test_leave_last_out_split_by_hand():
    # User 7 in time order: 5 (t10), 3 (t20), 4 (t30), 1 (t40), 6 (t50).
    data = sequential_recommendation_data(_tiny(), sequence_length=3)
    np.testing.assert_array_equal(data.test.history, [[3, 4, 1]])
    np.testing.assert_array_equal(data.test.target, [6])
    np.testing.assert_array_equal(data.test.rating, [4])
    np.testing.assert_array_equal(data.validation.history, [[5, 3, 4]])
    np.testing.assert_array_equal(data.validation.target, [1])
    np.testing.assert_array_equal(data.train.history, [[0, 0, 5], [0, 5, 3]])
    np.testing.assert_array_equal(data.train.target, [3, 4])
    np.testing.assert_array_equal(data.train.rating, [1, 3])
    np.testing.assert_array_equal(data.train.user, [7, 7])
    # Training events exclude the validation and test targets.
    np.testing.assert_array_equal(data.train_interactions[1], [5, 3, 4])
    np.testing.assert_array_equal(data.item_counts, [0, 0, 0, 1, 1, 1, 0, 0, 0, 0])
    (features, labels), = data.test.dataset(4).take(1)
    assert features["history"].shape == (1, 3) and features["history"].dtype == tf.int32
    np.testing.assert_array_equal(labels["next_item"], [6])
    train = data.train.dataset(2, shuffle=True)
    assert train.element_spec[0]["history"].shape == (2, 3)


def test_movielens_through_tfds_mock_data():
    rows = {
        "user_id": [b"u2", b"u1", b"u2", b"u2", b"u1", b"u1", b"u2"],
        "movie_id": [b"50", b"7", b"7", b"100", b"50", b"100", b"3"],
        "user_rating": np.array([4, 3, 5, 2, 1, 4, 3], "float32"),
        "timestamp": np.array([5, 1, 2, 9, 3, 4, 7], "int64"),
    }

    def as_dataset(self, split, *args, **kwargs):
        return tf.data.Dataset.from_tensor_slices(rows)

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        interactions = movielens_interactions("movielens/100k-ratings")
    assert interactions.num_users == 2 and interactions.num_items == 4
    # Movies renumbered by sorted id: "100" -> 1, "3" -> 2, "50" -> 3, "7" -> 4.
    assert interactions.item_names == ["[PAD]", "100", "3", "50", "7"]
    data = sequential_recommendation_data(interactions, sequence_length=4)
    # u1 in time: 7, 50, 100; u2: 7, 50, 3, 100.
    np.testing.assert_array_equal(data.test.target, [1, 1])
    np.testing.assert_array_equal(data.test.history, [[0, 0, 4, 3], [0, 4, 3, 2]])
    np.testing.assert_array_equal(data.test.rating, [4, 2])


def test_movielens_random_mock_data_runs():
    with tfds.testing.mock_data(num_examples=40):
        interactions = movielens_interactions("movielens/100k-ratings")
    assert len(interactions.item) == 40 and interactions.item.min() >= 1


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: generate_behaviour(num_users=0), "num_users"),
        (lambda: generate_behaviour(num_items=5, num_categories=10), "num_items"),
        (lambda: generate_behaviour(min_length=2), "min_length"),
        (lambda: generate_behaviour(transition_probability=1.5), "transition_probability"),
        (lambda: sequential_recommendation_data([1, 2, 3]), "interactions"),
        (lambda: sequential_recommendation_data(_tiny(), sequence_length=0), "sequence_length"),
        (lambda: sequential_recommendation_data(_tiny(), min_events=9), "at least min_events=9"),
        (lambda: movielens_interactions("movielens/100k-movies"), "ratings config"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
