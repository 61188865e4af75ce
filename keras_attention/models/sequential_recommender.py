"""`sequential_recommender`: a behaviour-sequence transformer (BST/SASRec)."""

import keras
from keras import ops

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_heads
from keras_attention.arguments import check_positive_int
from keras_attention.arguments import check_rate
from keras_attention.layers.attention.target_attention import TargetAttention
from keras_attention.layers.embeddings.position_embedding import PositionEmbedding
from keras_attention.layers.regularization.dropout import Dropout
from keras_attention.models import common
from keras_attention.models.elementwise_mean_squared_error import ElementwiseMeanSquaredError

BUILDER = "sequential_recommender"


def sequential_recommender(
    num_items,
    sequence_length,
    hidden_dim=64,
    num_layers=2,
    num_heads=2,
    intermediate_dim=None,
    dropout=0.2,
    attention="multi_head",
    attention_kwargs=None,
    use_causal_mask=False,
    target_attention=True,
    rating_units=(64,),
    name=BUILDER,
):
    """A behaviour-sequence transformer for next-item and rating prediction.

    The user's recent items (ids `1..num_items`, most recent last,
    left-padded with 0) are embedded with learned position embeddings and
    encoded by `num_layers` transformer blocks with any registered
    attention variant. Two heads:

    - `next_item`: logits over every item id (column 0 is padding) from
      the encoding of the most recent item, as in SASRec; train with sparse
      categorical cross-entropy, rank with the logits (HR@k, NDCG@k).
    - `rating`: the rating a user gives a candidate `target_item`. As in
      BST/DIN, the candidate's embedding (the same item table) weighs the
      encoded history with `TargetAttention` (`target_attention=True`; else
      the history is mean-pooled), and an MLP over `[candidate, interest,
      most recent encoding]` gives the rating; train with mean squared error
      (RMSE, MAE).

    Args:
        num_items: int, the number of items (ids `1..num_items`).
        sequence_length: int, the history length.
        hidden_dim, num_layers, num_heads, intermediate_dim, dropout: the
            transformer's sizes (`intermediate_dim` defaults to
            `2 * hidden_dim`).
        attention: a registered attention variant name (see
            `keras_attention.layers.available()`), class, config or layer.
        attention_kwargs: dict, extra constructor arguments of the variant.
        use_causal_mask: bool, causal self-attention over the history. Not
            needed for these heads (the target is never in the history);
            `True` gives SASRec's encoder (variants that cannot be causal,
            e.g. `"low_rank"`, refuse it).
        target_attention: bool, DIN target attention in the rating head.
        rating_units: tuple of ints, the rating MLP's hidden layers.
        name: the model's name.

    Returns:
        An uncompiled functional `keras.Model` taking
        `{"history": int32 (batch, sequence_length), "target_item": int32
        (batch,)}` and returning `{"next_item": (batch, num_items + 1)
        logits, "rating": (batch,)}`.

    Example:

    >>> model = sequential_recommender(num_items=100, sequence_length=8,
    ...                                hidden_dim=16, num_layers=1)
    >>> out = model({"history": keras.ops.ones((2, 8), "int32"),
    ...              "target_item": keras.ops.ones((2,), "int32")})
    >>> tuple(out["next_item"].shape), tuple(out["rating"].shape)
    ((2, 101), (2,))

    Reference:
        - [Kang and McAuley, 2018. Self-Attentive Sequential Recommendation
          (SASRec)](https://arxiv.org/abs/1808.09781)
        - [Chen et al., 2019. Behavior Sequence Transformer for E-commerce
          Recommendation in Alibaba (BST)](https://arxiv.org/abs/1905.06874)
        - [Zhou et al., 2018. Deep Interest Network](
          https://arxiv.org/abs/1706.06978)
    """
    check_positive_int(BUILDER, "num_items", num_items)
    check_positive_int(BUILDER, "sequence_length", sequence_length)
    check_positive_int(BUILDER, "hidden_dim", hidden_dim)
    check_heads(BUILDER, hidden_dim, num_heads)
    check_rate(BUILDER, "dropout", dropout)
    if isinstance(rating_units, int) or not isinstance(rating_units, (list, tuple)):
        raise argument_error(BUILDER, "rating_units", "must be a tuple of positive ints", f"rating_units={rating_units!r}")
    for units in rating_units:
        check_positive_int(BUILDER, "rating_units", units)
    intermediate_dim = intermediate_dim or 2 * hidden_dim

    history = keras.Input((sequence_length,), dtype="int32", name="history")
    target = keras.Input((), dtype="int32", name="target_item")
    items = keras.layers.Embedding(num_items + 1, hidden_dim, mask_zero=True, name="item_embedding")
    x = items(history)
    positions = PositionEmbedding(sequence_length, name="position_embedding")(x)
    x = keras.layers.Add(name="embedding_sum")([x, positions])
    x = Dropout(dropout, name="embedding_dropout")(x)
    x = common.encoder_stack(
        x,
        builder=BUILDER,
        num_layers=num_layers,
        num_heads=num_heads,
        intermediate_dim=intermediate_dim,
        attention=attention,
        attention_kwargs=attention_kwargs,
        dropout=dropout,
        sequence_length=sequence_length,
        use_causal_mask=use_causal_mask,
    )
    # The most recent item is the last position (histories are left-padded).
    recent = x[:, -1]
    next_item = keras.layers.Dense(num_items + 1, dtype="float32", name="next_item")(recent)

    candidate = items(target)
    if target_attention:
        interest = TargetAttention(hidden_units=(2 * hidden_dim, hidden_dim), normalize="softmax", name="target_attention")(candidate, x)
    else:
        interest = common.pool_sequence(x, "mean", num_heads)
    r = keras.layers.Concatenate(name="rating_features")([candidate, interest, recent])
    for i, units in enumerate(rating_units):
        r = keras.layers.Dense(units, activation="relu", name=f"rating_hidden_{i}")(r)
        r = Dropout(dropout, name=f"rating_dropout_{i}")(r)
    rating = keras.layers.Dense(1, dtype="float32", name="rating_output")(r)
    rating = ops.squeeze(rating, -1)
    return keras.Model(
        {"history": history, "target_item": target},
        {"next_item": next_item, "rating": rating},
        name=name,
    )


def compile_sequential_recommender(
    model,
    learning_rate=1e-3,
    rating_weight=0.5,
    top_k=10,
    **kwargs,
):
    """Compiles a `sequential_recommender` model (AdamW, XLA).

    Losses: sparse categorical cross-entropy on `next_item` and mean squared
    error (weighted by `rating_weight`) on `rating`. Metrics: hit rate at
    `top_k` for `next_item` (named `hit_rate`), RMSE and MAE for `rating`.

    Args:
        model: the model.
        learning_rate: float, the peak learning rate.
        rating_weight: float >= 0, the rating loss weight (0 trains the
            ranking head only).
        top_k: int, the hit-rate cut-off.
        **kwargs: `common.compile_model` arguments (`weight_decay`,
            `warmup_steps`, `decay_steps`, `jit_compile`, ...).

    Returns:
        The compiled model.
    """
    if not isinstance(rating_weight, (int, float)) or rating_weight < 0:
        raise argument_error("compile_sequential_recommender", "rating_weight", "must be a float >= 0", f"rating_weight={rating_weight!r}")
    return common.compile_model(
        model,
        loss={
            "next_item": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "rating": ElementwiseMeanSquaredError(),
        },
        loss_weights={"next_item": 1.0, "rating": float(rating_weight)},
        metrics={
            "next_item": [keras.metrics.SparseTopKCategoricalAccuracy(k=top_k, name="hit_rate")],
            "rating": [keras.metrics.RootMeanSquaredError(name="rmse"), keras.metrics.MeanAbsoluteError(name="mae")],
        },
        learning_rate=learning_rate,
        **kwargs,
    )
