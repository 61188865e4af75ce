"""Baselines a sequential recommender must beat: popularity and matrix
factorisation."""

import keras
import numpy as np

from keras_attention.arguments import check_positive_int

BUILDER = "matrix_factorization"


def popularity_scores(item_counts, num_rows):
    """Ranks every item by its training count, the same for every user.

    Args:
        item_counts: int array `(num_items + 1,)` (e.g.
            `SequentialRecommendationData.item_counts`).
        num_rows: int, the number of examples to score.

    Returns:
        float32 `(num_rows, num_items + 1)`.
    """
    counts = np.asarray(item_counts, dtype="float32")
    return np.broadcast_to(counts, (num_rows, counts.shape[0]))


def matrix_factorization(num_users, num_items, dim=32, l2=1e-5, name=BUILDER):
    """Implicit-feedback matrix factorisation with a softmax over items.

    `score(u, i) = p_u . q_i + b_i`: a user embedding `p_u` and item
    factors `q_i` with biases `b_i` (one `Dense` over the items). Trained
    with sparse categorical cross-entropy on the `(user, item)` training
    events, it ranks every item for a user regardless of order, so it
    captures tastes but not sequences.

    Args:
        num_users, num_items: ints (items `1..num_items`, column 0 unused).
        dim: int, the factor size.
        l2: float, L2 regularisation of both factor tables.
        name: the model's name.

    Returns:
        An uncompiled `keras.Model` from int32 `user` `(batch,)` to logits
        `(batch, num_items + 1)`.

    Example:

    >>> model = matrix_factorization(num_users=10, num_items=20, dim=8)
    >>> model.output_shape
    (None, 21)
    """
    for argument, value in (("num_users", num_users), ("num_items", num_items), ("dim", dim)):
        check_positive_int(BUILDER, argument, value)
    user = keras.Input((), dtype="int32", name="user")
    regularizer = keras.regularizers.L2(l2) if l2 else None
    p = keras.layers.Embedding(num_users, dim, embeddings_regularizer=regularizer, name="user_factors")(user)
    logits = keras.layers.Dense(num_items + 1, kernel_regularizer=regularizer, name="item_factors")(p)
    return keras.Model(user, logits, name=name)


def fit_matrix_factorization(data, dim=32, l2=1e-5, epochs=10, batch_size=512, learning_rate=3e-3, seed=0, verbose=0):
    """Trains `matrix_factorization` on a dataset's training events.

    Args:
        data: `SequentialRecommendationData`.
        dim, l2: see `matrix_factorization`.
        epochs, batch_size, learning_rate: training.
        seed: int.
        verbose: `model.fit` verbosity.

    Returns:
        The trained model (call it on user ids for scores).
    """
    keras.utils.set_random_seed(seed)
    model = matrix_factorization(data.num_users, data.num_items, dim=dim, l2=l2)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    users, items = data.train_interactions
    model.fit(users, items, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=verbose)
    return model
