"""`question_answering`: extractive QA (start/end logits) with any attention.

The builder, its compile helper, span decoding (`best_span`) and the SQuAD
metrics (`exact_match`, `f1_score`, `squad_scores`). The `squad` pipeline
that packs question and context is
`keras_attention.data.question_answering`.
"""

import collections
import re
import string

import keras
from keras import ops

from keras_attention.arguments import check_heads
from keras_attention.arguments import check_positive_int
from keras_attention.arguments import check_rate
from keras_attention.layers.regularization.dropout import Dropout
from keras_attention.layers.embeddings.token_and_position_embedding import (
    TokenAndPositionEmbedding,
)
from keras_attention.models import common

BUILDER = "question_answering"
# The span logits are float32 under every dtype policy; a finite value keeps
# `start + end` sums finite in `best_span`.
MASKED_LOGIT = -1e9


def question_answering(
    vocabulary_size,
    sequence_length,
    hidden_dim=128,
    num_layers=2,
    num_heads=4,
    intermediate_dim=None,
    dropout=0.1,
    embedding_dropout=None,
    attention="multi_head",
    attention_kwargs=None,
    position="learned",
    norm_first=True,
    name=BUILDER,
):
    """An extractive question-answering transformer: start/end logits.

    The question and the context come packed as one sequence,
    `[CLS] question [SEP] context` padded with id 0, with segment ids 0 for
    `[CLS] question [SEP]` and 1 for the context (see
    `keras_attention.data.question_answering.encode_question_answering`).
    Token + position + segment embeddings feed `num_layers` transformer
    encoder blocks with the chosen attention variant (padding masked), and a
    linear layer scores every position as the answer's first and last token.
    Positions that cannot hold the answer (padding, `[CLS]`, the question,
    `[SEP]`) get the logit `-1e9`, so a softmax over positions puts no mass
    on them:

    `start_logits[b, t] = w_s . h[b, t] + c_s` if `segment_ids[b, t] == 1`
    and `token_ids[b, t] != 0`, else `-1e9`; `end_logits` likewise.

    Args:
        vocabulary_size: int, number of token ids (id 0 = padding).
        sequence_length: int, the fixed packed length (XLA wants static
            shapes).
        hidden_dim: int, model width.
        num_layers: int, number of encoder blocks.
        num_heads: int, attention heads (must divide `hidden_dim`).
        intermediate_dim: int, feed-forward width. Defaults to
            `4 * hidden_dim`.
        dropout: float in `[0, 1)`, in the blocks.
        embedding_dropout: float in `[0, 1)` or `None`, dropout on the
            summed embeddings. Defaults to `dropout`.
        attention: a registered attention variant name (see
            `keras_attention.layers.available()`), class, config or layer.
        attention_kwargs: dict, extra constructor arguments of the variant;
            length-dependent ones default from `sequence_length`.
        position: `"learned"` or `"sinusoidal"` position embedding.
        norm_first: bool, pre-norm blocks.
        name: model name.

    Returns:
        An uncompiled functional `keras.Model` taking `[token_ids,
        segment_ids]`, both int `(batch, sequence_length)`, and returning
        `[start_logits, end_logits]`, both float32 `(batch,
        sequence_length)`.

    Example:

    >>> model = question_answering(
    ...     vocabulary_size=1000, sequence_length=32,
    ...     hidden_dim=32, num_layers=1, num_heads=2, attention="linear",
    ... )
    >>> model = compile_question_answering(model)
    >>> tokens = np.array([[2, 7, 8, 3, 20, 21, 22, 23] + [0] * 24], "int32")
    >>> segments = np.array([[0, 0, 0, 0, 1, 1, 1, 1] + [0] * 24], "int32")
    >>> start_logits, end_logits = model([tokens, segments])
    >>> start, end, score = best_span(start_logits, end_logits, max_answer_length=3)
    >>> bool(4 <= start[0] <= end[0] <= 7)  # the span lies in the context
    True

    Reference:
        - [Devlin et al., 2019, "BERT", section 4.2 (SQuAD v1.1)](
          https://arxiv.org/abs/1810.04805)
    """
    check_positive_int(BUILDER, "vocabulary_size", vocabulary_size)
    check_positive_int(BUILDER, "sequence_length", sequence_length)
    check_heads(BUILDER, hidden_dim, num_heads)
    check_rate(BUILDER, "dropout", dropout)
    if embedding_dropout is None:
        embedding_dropout = dropout
    check_rate(BUILDER, "embedding_dropout", embedding_dropout)
    intermediate_dim = intermediate_dim or 4 * hidden_dim

    token_ids = keras.Input((sequence_length,), dtype="int32", name="token_ids")
    segment_ids = keras.Input((sequence_length,), dtype="int32", name="segment_ids")
    tokens = TokenAndPositionEmbedding(
        vocabulary_size,
        sequence_length,
        hidden_dim,
        mask_zero=True,
        position=position,
        name="embedding",
    )(token_ids)
    # Segment rows: 0 padding, 1 question part, 2 context. With
    # `mask_zero=True` both embeddings carry the same padding mask, which
    # `Add` (an OR of its inputs' masks, none if one lacks a mask) keeps.
    padded_segments = ops.multiply(
        ops.add(segment_ids, 1), ops.cast(ops.not_equal(token_ids, 0), "int32")
    )
    segments = keras.layers.Embedding(
        3, hidden_dim, mask_zero=True, name="segment_embedding"
    )(padded_segments)
    x = keras.layers.Add(name="embedding_sum")([tokens, segments])
    x = Dropout(embedding_dropout, name="embedding_dropout")(x)
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
        norm_first=norm_first,
    )
    span = keras.layers.Dense(2, dtype="float32", name="span")(x)
    context = ops.logical_and(ops.equal(segment_ids, 1), ops.not_equal(token_ids, 0))
    span = ops.where(ops.expand_dims(context, -1), span, MASKED_LOGIT)
    start_logits = keras.layers.Identity(dtype="float32", name="start_logits")(span[..., 0])
    end_logits = keras.layers.Identity(dtype="float32", name="end_logits")(span[..., 1])
    return keras.Model([token_ids, segment_ids], [start_logits, end_logits], name=name)


def compile_question_answering(model, learning_rate=5e-4, **kwargs):
    """Compiles a span model: cross-entropy over positions for start and end.

    The loss is the mean of the start and end sparse cross-entropies (the
    targets are the answer's first and last token positions); the metrics
    are the start and end position accuracies.

    Args:
        model: a model returning `[start_logits, end_logits]`.
        learning_rate: peak learning rate.
        **kwargs: passed to `keras_attention.models.compile_model` (e.g.
            `warmup_steps`, `decay_steps`, `weight_decay`).

    Returns:
        The compiled model.
    """
    return common.compile_model(
        model,
        loss=[
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        ],
        loss_weights=[0.5, 0.5],
        metrics=[
            [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        ],
        learning_rate=learning_rate,
        **kwargs,
    )


def best_span(start_logits, end_logits, max_answer_length=30):
    """The highest-scoring span `start <= end < start + max_answer_length`.

    `score(i, j) = start_logits[i] + end_logits[j]`, maximised over the
    valid pairs (ties go to the smallest `i`, then `j`). Works on a batch
    (`(batch, T)` logits) or one example (`(T,)`), eagerly or inside a
    compiled function.

    Args:
        start_logits, end_logits: float tensors `(batch, T)` or `(T,)`.
        max_answer_length: positive int, the longest span in tokens.

    Returns:
        `(start, end, score)`: int32 positions and the float score, each of
        shape `(batch,)` (or scalars for 1-D inputs).
    """
    if isinstance(max_answer_length, bool) or not isinstance(max_answer_length, int) or max_answer_length < 1:
        raise ValueError(
            "`best_span`: `max_answer_length` must be a positive int. "
            f"Received: max_answer_length={max_answer_length!r}"
        )
    start_logits = ops.convert_to_tensor(start_logits, "float32")
    end_logits = ops.convert_to_tensor(end_logits, "float32")
    single = len(start_logits.shape) == 1
    if single:
        start_logits, end_logits = start_logits[None], end_logits[None]
    if tuple(start_logits.shape) != tuple(end_logits.shape) or len(start_logits.shape) != 2:
        raise ValueError(
            "`best_span`: `start_logits` and `end_logits` must have the same "
            "shape, (batch, T) or (T,). Received: shapes "
            f"{tuple(start_logits.shape)} and {tuple(end_logits.shape)}"
        )
    length = start_logits.shape[-1]
    positions = ops.arange(length, dtype="int32")
    offset = positions[None, :] - positions[:, None]  # j - i
    valid = ops.logical_and(offset >= 0, offset < max_answer_length)
    scores = start_logits[:, :, None] + end_logits[:, None, :]
    lowest = ops.convert_to_tensor(float("-inf"), "float32")
    scores = ops.where(valid[None], scores, lowest)
    flat = ops.reshape(scores, (-1, length * length))
    index = ops.cast(ops.argmax(flat, axis=-1), "int32")
    score = ops.take_along_axis(flat, index[:, None], axis=-1)[:, 0]
    start, end = index // length, index % length
    if single:
        return start[0], end[0], score[0]
    return start, end, score


def normalize_answer(text):
    """SQuAD v1.1's answer normalisation: lower case, no punctuation, no
    articles (`a`, `an`, `the`), single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


_PUNCTUATION = frozenset(string.punctuation)


def exact_match(prediction, ground_truths):
    """1.0 if the normalised `prediction` equals a normalised ground truth.

    Args:
        prediction: str.
        ground_truths: str or list of str (the best one counts).
    """
    if isinstance(ground_truths, str):
        ground_truths = [ground_truths]
    return float(
        max(normalize_answer(prediction) == normalize_answer(t) for t in ground_truths)
    )


def f1_score(prediction, ground_truths):
    """SQuAD token-overlap F1 of `prediction`, the best over `ground_truths`.

    On normalised, whitespace-split tokens: `precision = common / len(pred)`,
    `recall = common / len(truth)`, `F1 = 2 P R / (P + R)`, with `common`
    the size of the multiset intersection (0 when it is empty).
    """
    if isinstance(ground_truths, str):
        ground_truths = [ground_truths]
    return max(_f1(prediction, truth) for truth in ground_truths)


def _f1(prediction, truth):
    predicted = normalize_answer(prediction).split()
    expected = normalize_answer(truth).split()
    common_tokens = collections.Counter(predicted) & collections.Counter(expected)
    overlap = sum(common_tokens.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(predicted)
    recall = overlap / len(expected)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions, references):
    """Mean exact match and F1 (fractions in `[0, 1]`; SQuAD's script
    reports them times 100).

    Args:
        predictions: list of predicted answer strings.
        references: list (same length) of lists of ground-truth strings.

    Returns:
        `{"exact_match": float, "f1": float}`.
    """
    if len(predictions) != len(references):
        raise ValueError(
            "`squad_scores`: `predictions` and `references` must have the "
            f"same length. Received: {len(predictions)} and {len(references)}"
        )
    if not predictions:
        return {"exact_match": 0.0, "f1": 0.0}
    n = len(predictions)
    return {
        "exact_match": sum(map(exact_match, predictions, references)) / n,
        "f1": sum(map(f1_score, predictions, references)) / n,
    }


def evaluate_question_answering(model, data, max_answer_length=30, batch_size=64):
    """SQuAD exact match and F1 of a span model on `data`'s validation split.

    Every validation example counts (also those whose answer the window
    cut off). The predicted span is `best_span` of the model's logits,
    mapped back to the context text.

    Args:
        model: a model taking `[token_ids, segment_ids]` and returning
            `[start_logits, end_logits]`.
        data: a `QuestionAnsweringData` (or its `validation_examples` dict).
        max_answer_length: int, the longest answer in tokens.
        batch_size: prediction batch size.

    Returns:
        `{"exact_match": float, "f1": float, "examples": int}` (fractions).
    """
    from keras_attention.data.question_answering import span_text

    examples = getattr(data, "validation_examples", data)
    if examples is None:
        raise ValueError("`evaluate_question_answering`: `data` has no validation split")
    start_logits, end_logits = model.predict(
        [examples["token_ids"], examples["segment_ids"]], batch_size=batch_size, verbose=0
    )
    start, end, _ = best_span(start_logits, end_logits, max_answer_length)
    start, end = ops.convert_to_numpy(start), ops.convert_to_numpy(end)
    predictions = [
        span_text(context, offsets, s, e)
        for context, offsets, s, e in zip(examples["contexts"], examples["offsets"], start, end)
    ]
    scores = squad_scores(predictions, examples["answers"])
    scores["examples"] = len(predictions)
    return scores
