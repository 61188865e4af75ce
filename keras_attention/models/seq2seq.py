"""`seq2seq`: an encoder-decoder transformer, `translate` and BLEU."""

import collections
import math

import keras
from keras import ops

from keras_attention.arguments import check_positive_int
from keras_attention.arguments import check_rate
from keras_attention.arguments import argument_error
from keras_attention.arguments import check_choice
from keras_attention.arguments import check_heads
from keras_attention.models import common
from keras_attention.models import generation
from keras_attention.models.language_model import TokenAccuracy
from keras_attention.models.language_model import check_cached_blocks
from keras_attention.models.language_model import decoder_blocks
from keras_attention.models.language_model import decoder_stack
from keras_attention.models.language_model import model_layer
from keras_attention.models.language_model import sequence_loss

BUILDER = "seq2seq"


def seq2seq(
    source_vocabulary_size,
    target_vocabulary_size,
    source_length,
    target_length,
    hidden_dim=128,
    num_layers=2,
    num_decoder_layers=None,
    num_heads=4,
    intermediate_dim=None,
    dropout=0.1,
    attention="multi_head",
    attention_kwargs=None,
    decoder_attention=None,
    decoder_attention_kwargs=None,
    cross_attention="multi_head",
    cross_attention_kwargs=None,
    position="learned",
    name=BUILDER,
):
    """An encoder-decoder transformer trained with teacher forcing.

    The source ids (id 0 = padding, masked everywhere) go through a token +
    position embedding and `num_layers` pre-norm `TransformerEncoder`
    blocks. The target ids (`[start] y_1 ... y_{T-1}`, right-padded) go
    through their own embedding and `num_decoder_layers` pre-norm
    `TransformerDecoder` blocks: causal self-attention, then
    cross-attention to the encoded source. Position `t` of the output
    predicts `y_{t+1}` (teacher forcing: the model sees the true previous
    tokens while training). `translate` decodes with greedy or beam search
    and key/value caches.

    Args:
        source_vocabulary_size: int, source token ids (0 = padding).
        target_vocabulary_size: int, target token ids (0 = padding).
        source_length: int, the fixed source length.
        target_length: int, the fixed target length.
        hidden_dim: int, model width.
        num_layers: int, encoder blocks.
        num_decoder_layers: int, decoder blocks. Defaults to `num_layers`.
        num_heads: int, attention heads (must divide `hidden_dim`).
        intermediate_dim: int, feed-forward width. Defaults to
            `4 * hidden_dim`.
        dropout: float in `[0, 1)`.
        attention: the registered variant of the encoder self-attention
            (see `keras_attention.layers.available()`), and of the decoder
            self-attention unless `decoder_attention` is given.
        attention_kwargs: dict, its extra constructor arguments
            (length-dependent ones default from the sequence lengths).
        decoder_attention: the decoder self-attention variant (causal);
            defaults to `attention`.
        decoder_attention_kwargs: dict; defaults to `attention_kwargs` when
            `decoder_attention` is `None`.
        cross_attention: the cross-attention variant. Defaults to
            `"multi_head"`.
        cross_attention_kwargs: dict, its extra constructor arguments.
        position: `"learned"` or `"sinusoidal"` position embeddings.
        name: model name.

    Returns:
        An uncompiled functional `keras.Model` mapping
        `[source_ids (batch, source_length), target_ids (batch,
        target_length)]` (int) to `(batch, target_length,
        target_vocabulary_size)` logits.

    Example:

    >>> model = seq2seq(100, 120, source_length=12, target_length=10,
    ...                 hidden_dim=32, num_layers=1, num_heads=2)
    >>> model = compile_seq2seq(model)
    >>> source = np.random.randint(1, 100, (8, 12))
    >>> target = np.random.randint(3, 120, (8, 11))
    >>> target[:, 0] = 1  # the start token
    >>> # model.fit([source, target[:, :-1]], target[:, 1:], epochs=1)
    >>> ids = translate(model, source[:2], start_token_id=1, end_token_id=2)
    >>> tuple(ids.shape)
    (2, 10)

    Reference:
        - [Vaswani et al., 2017, "Attention Is All You Need"](
          https://arxiv.org/abs/1706.03762).
    """
    for argument, value in (
        ("source_vocabulary_size", source_vocabulary_size),
        ("target_vocabulary_size", target_vocabulary_size),
        ("source_length", source_length),
        ("target_length", target_length),
        ("num_layers", num_layers),
    ):
        check_positive_int(BUILDER, argument, value)
    check_positive_int(
        BUILDER, "num_decoder_layers", num_decoder_layers, allow_none=True
    )
    check_positive_int(
        BUILDER, "intermediate_dim", intermediate_dim, allow_none=True
    )
    check_heads(BUILDER, hidden_dim, num_heads)
    check_rate(BUILDER, "dropout", dropout)
    check_choice(BUILDER, "position", position, ("learned", "sinusoidal"))
    intermediate_dim = intermediate_dim or 4 * hidden_dim
    if decoder_attention is None:
        decoder_attention, decoder_attention_kwargs = attention, attention_kwargs
    decoder_attention, decoder_attention_kwargs = common.attention_arguments(
        BUILDER, decoder_attention, decoder_attention_kwargs, target_length
    )
    cross_attention, cross_attention_kwargs = common.attention_arguments(
        BUILDER, cross_attention, cross_attention_kwargs, source_length
    )

    source = keras.Input((source_length,), dtype="int32", name="source_tokens")
    target = keras.Input((target_length,), dtype="int32", name="target_tokens")
    x = common.embed_tokens(
        source,
        vocabulary_size=source_vocabulary_size,
        sequence_length=source_length,
        hidden_dim=hidden_dim,
        dropout=dropout,
        position=position,
        name="source_embedding",
        dropout_name="source_dropout",
    )
    encoded = common.encoder_stack(
        x,
        builder=BUILDER,
        num_layers=num_layers,
        num_heads=num_heads,
        intermediate_dim=intermediate_dim,
        attention=attention,
        attention_kwargs=attention_kwargs,
        dropout=dropout,
        sequence_length=source_length,
        name="encoder",
    )
    y = common.embed_tokens(
        target,
        vocabulary_size=target_vocabulary_size,
        sequence_length=target_length,
        hidden_dim=hidden_dim,
        dropout=dropout,
        position=position,
        mask_zero=False,
        name="target_embedding",
        dropout_name="target_dropout",
    )
    y = decoder_stack(
        y,
        builder=BUILDER,
        num_layers=num_decoder_layers or num_layers,
        num_heads=num_heads,
        intermediate_dim=intermediate_dim,
        attention=decoder_attention,
        attention_kwargs=decoder_attention_kwargs,
        dropout=dropout,
        encoded=encoded,
        cross_attention=cross_attention,
        cross_attention_kwargs=cross_attention_kwargs,
    )
    logits = keras.layers.Dense(target_vocabulary_size, name="logits")(y)
    return keras.Model([source, target], logits, name=name)


def compile_seq2seq(model, learning_rate=1e-3, pad_token_id=0, **kwargs):
    """Compiles a teacher-forced seq2seq model (padding left out), XLA.

    Args:
        model: a model returning `(batch, T, vocabulary)` logits.
        learning_rate: peak learning rate.
        pad_token_id: int, the target id left out of loss and accuracy.
        **kwargs: passed to `keras_attention.models.compile_model`.

    Returns:
        The compiled model.
    """
    return common.compile_model(
        model,
        loss=sequence_loss(pad_token_id),
        metrics=[TokenAccuracy(ignore_class=pad_token_id)],
        learning_rate=learning_rate,
        **kwargs,
    )


# --------------------------------------------------------------------------
# decoding
# --------------------------------------------------------------------------
def _encoder_blocks(model, function):
    names = {layer.name for layer in model.layers}
    blocks = []
    while f"encoder_{len(blocks)}" in names:
        blocks.append(model.get_layer(f"encoder_{len(blocks)}"))
    if not blocks:
        model_layer(model, "encoder_0", function, BUILDER)
    return blocks


def seq2seq_functions(model, function="translate"):
    """`(encode, make_step)` of a `seq2seq` model, its layers by name.

    `encode(source_ids)` returns the encoded source; `make_step(encoded,
    source_mask)` the decoding step function (see `generation`), whose
    cache is `{"self": [...], "cross": [...], "source_mask": mask}`
    (`seq2seq_cache` makes it) or `None` (a full forward pass over the
    encoded source at each step).
    """
    source_embedding = model_layer(model, "source_embedding", function, BUILDER)
    encoders = _encoder_blocks(model, function)
    encoder_norm = model_layer(model, "encoder_norm", function, BUILDER)
    target_embedding = model_layer(model, "target_embedding", function, BUILDER)
    decoders = decoder_blocks(model, function, BUILDER)
    decoder_norm = model_layer(model, "decoder_norm", function, BUILDER)
    head = model_layer(model, "logits", function, BUILDER)

    def encode(source_ids):
        mask = ops.not_equal(source_ids, 0)
        x = source_embedding(source_ids)
        for block in encoders:
            x = block(x, padding_mask=mask)
        return encoder_norm(x)

    def make_step(encoded, source_mask):
        def step(token_ids, cache, index, compute_logits=True):
            x = target_embedding(token_ids, start_index=index)
            updated = []
            for i, block in enumerate(decoders):
                if cache is None:
                    x = block(x, encoded, encoder_padding_mask=source_mask)
                    continue
                x, self_cache, _ = block(
                    x,
                    self_attention_cache=cache["self"][i],
                    self_attention_cache_update_index=index,
                    cross_attention_cache=cache["cross"][i],
                    encoder_padding_mask=cache["source_mask"],
                )
                updated.append(self_cache)
            if cache is not None:
                cache = dict(cache, self=updated)
            if not compute_logits:
                return None, cache
            return head(decoder_norm(x)), cache

        return step

    def make_cache(encoded, source_mask, length):
        batch = ops.shape(encoded)[0]
        return {
            "self": [
                block.self_attention_layer.empty_cache(batch, length)
                for block in decoders
            ],
            "cross": [
                block.compute_cross_attention_cache(encoded) for block in decoders
            ],
            "source_mask": source_mask,
        }

    return encode, make_step, make_cache, decoders


def _translate_function(
    model, max_length, beam_size, length_penalty, start_token_id,
    end_token_id, use_cache, jit_compile,
):
    def make():
        encode, make_step, make_cache, _ = seq2seq_functions(model)

        def run(source_ids):
            source_ids = ops.cast(source_ids, "int32")
            source_mask = ops.not_equal(source_ids, 0)
            encoded = encode(source_ids)
            step = make_step(encoded, source_mask)
            prompt = ops.full((ops.shape(source_ids)[0], 1), start_token_id, "int32")
            cache = (
                make_cache(encoded, source_mask, max_length - 1)
                if use_cache
                else None
            )
            if beam_size == 1:
                tokens = generation.decode(
                    step, prompt, max_length, cache=cache, end_token_id=end_token_id
                )
            else:
                tokens, _ = generation.beam_search(
                    step,
                    prompt,
                    max_length,
                    cache,
                    beam_size,
                    length_penalty=length_penalty,
                    end_token_id=end_token_id,
                )
            return tokens[:, 1:]

        return generation.compile_decoder(run, jit_compile)

    key = (
        "translate", max_length, beam_size, float(length_penalty),
        start_token_id, end_token_id, use_cache, jit_compile,
    )
    return generation.cached_decoder(model, key, make)


def _check_decoding(function, model, beam_size, length_penalty, start_token_id, end_token_id, use_cache, max_length):
    check_positive_int(function, "beam_size", beam_size)
    vocabulary = model_layer(model, "logits", function, BUILDER).units
    if beam_size > vocabulary:
        raise argument_error(
            function, "beam_size", f"must be at most the vocabulary size ({vocabulary})", f"beam_size={beam_size}"
        )
    if isinstance(length_penalty, bool) or not isinstance(length_penalty, (int, float)) or length_penalty < 0:
        raise argument_error(
            function, "length_penalty", "must be a float >= 0", f"length_penalty={length_penalty!r}"
        )
    for argument, value in (("start_token_id", start_token_id), ("end_token_id", end_token_id)):
        if value is None and argument == "end_token_id":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < vocabulary:
            raise argument_error(
                function, argument, f"must be a token id in [1, {vocabulary})", f"{argument}={value!r}"
            )
    if beam_size > 1 and not use_cache:
        raise argument_error(
            function, "use_cache", "must be True for beam search", "use_cache=False, beam_size>1"
        )
    target_length = model_layer(model, "target_embedding", function, BUILDER).sequence_length
    check_positive_int(function, "max_length", max_length, allow_none=True)
    length = target_length if max_length is None else max_length
    if length > target_length:
        raise argument_error(
            function,
            "max_length",
            f"must be at most target_length = {target_length}",
            f"max_length={max_length}",
        )
    if use_cache:
        check_cached_blocks(decoder_blocks(model, function, BUILDER), function)
    return length


def translate(
    model,
    source_ids,
    start_token_id,
    end_token_id=None,
    beam_size=1,
    length_penalty=0.0,
    max_length=None,
    use_cache=True,
    jit_compile=True,
):
    """Decodes target ids from source ids with a `seq2seq` model.

    Encodes the sources once, computes every block's cross-attention keys
    and values once, then runs greedy decoding (`beam_size=1`) or beam
    search in one XLA-compiled loop, each step feeding the newest token only
    (self-attention key/value caches).

    Args:
        model: a model built by `seq2seq`.
        source_ids: int array `(batch, source_length)`, 0-padded.
        start_token_id: int, the token every target starts with.
        end_token_id: int or `None`; a sequence ends with it.
        beam_size: int, 1 for greedy decoding.
        length_penalty: float `alpha >= 0` of the GNMT length penalty of
            beam search (0: rank by log-probability).
        max_length: int, at most this many new tokens; defaults to the
            model's `target_length`.
        use_cache: bool; `False` (greedy only) runs the full decoder at every
            step.
        jit_compile: bool, compile the loop with XLA (TensorFlow).

    Returns:
        int32 NumPy array `(batch, max_length)`: the new tokens (end token
        included), 0-padded, laid out like the training targets.

    Example:

    ```python
    model = seq2seq(100, 120, 12, 10, hidden_dim=32, num_layers=1,
                    num_heads=2)
    ids = translate(model, np.ones((2, 12), "int32"), start_token_id=1,
                    end_token_id=2, beam_size=3, length_penalty=0.6)
    ```
    """
    length = _check_decoding(
        "translate", model, beam_size, length_penalty, start_token_id,
        end_token_id, use_cache, max_length,
    )
    function = _translate_function(
        model, length + 1, beam_size, length_penalty, start_token_id,
        end_token_id, use_cache, jit_compile,
    )
    return ops.convert_to_numpy(function(ops.convert_to_tensor(source_ids, "int32")))


def export_translator(
    model,
    filepath,
    source_vectorizer,
    start_token_id,
    end_token_id=None,
    target_vocabulary=None,
    beam_size=1,
    length_penalty=0.0,
):
    """Exports raw-string translation as a SavedModel endpoint (TensorFlow).

    The `serve` endpoint takes a string tensor `(batch,)`, vectorises it
    with `source_vectorizer` (the adapted `TextVectorization`, saved in the
    SavedModel with its vocabulary), decodes with the cached, XLA-compiled
    loop of `translate` (the string ops stay outside XLA) and returns
    `{"token_ids": int32 (batch, target_length)}`, plus `"text"` (the
    tokens joined with spaces, special tokens dropped) when
    `target_vocabulary` is given. It loads with TensorFlow alone.

    Args:
        model: a model built by `seq2seq`.
        filepath: the SavedModel directory.
        source_vectorizer: the layer mapping strings to source ids.
        start_token_id, end_token_id, beam_size, length_penalty: as in
            `translate`.
        target_vocabulary: list of target tokens (id -> token) or `None`.
    """
    import tensorflow as tf

    length = _check_decoding(
        "export_translator", model, beam_size, length_penalty,
        start_token_id, end_token_id, True, None,
    )
    function = _translate_function(
        model, length + 1, beam_size, length_penalty, start_token_id,
        end_token_id, True, True,
    )
    words = None
    if target_vocabulary is not None:
        special = {0, start_token_id} | ({end_token_id} if end_token_id else set())
        words = [
            "" if i in special else str(token)
            for i, token in enumerate(target_vocabulary)
        ]

    def serve(texts):
        ids = function(ops.cast(source_vectorizer(texts), "int32"))
        outputs = {"token_ids": ids}
        if words is not None:
            tokens = tf.gather(tf.constant(words), ids)
            text = tf.strings.reduce_join(tokens, axis=-1, separator=" ")
            outputs["text"] = tf.strings.strip(
                tf.strings.regex_replace(text, " +", " ")
            )
        return outputs

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(source_vectorizer)
    archive.add_endpoint(
        "serve", serve, input_signature=[tf.TensorSpec((None,), tf.string)]
    )
    archive.write_out(filepath, verbose=False)


# --------------------------------------------------------------------------
# metrics on decoded sequences
# --------------------------------------------------------------------------
def detokenize(ids, vocabulary, special_ids=(0,), end_token_id=None):
    """Token lists from id rows: cut at `end_token_id`, specials dropped.

    Args:
        ids: int array `(batch, T)`.
        vocabulary: list, id -> token.
        special_ids: ids to drop (padding, start, ...).
        end_token_id: int or `None`; a row ends before it.

    Returns:
        A list of lists of tokens.
    """
    rows = []
    for row in ids:
        tokens = []
        for i in (int(i) for i in row):
            if end_token_id is not None and i == end_token_id:
                break
            if i not in special_ids:
                tokens.append(vocabulary[i])
        rows.append(tokens)
    return rows


def _ngrams(tokens, n):
    return collections.Counter(
        tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)
    )


def corpus_bleu(references, hypotheses, max_order=4, smooth="exp"):
    """Corpus BLEU (one reference per sentence), on a 0-100 scale.

    `BLEU = BP * exp(mean_n log p_n)`, where `p_n` is the clipped n-gram
    precision of the whole corpus (n = 1 ... `max_order`) and
    `BP = min(1, exp(1 - r / c))` the brevity penalty (`r`, `c`: reference
    and hypothesis token counts). With `smooth="exp"` (sacreBLEU's
    default) an order with no match gets `1 / (2^k * total)` for its `k`-th
    occurrence instead of 0; with `"none"` such a corpus scores 0.

    The scores depend on the tokenisation: on the vectoriser's tokens (the
    lower-cased, punctuation-free words of `TextVectorization`) they are
    not comparable with sacreBLEU's detokenised scores.

    Args:
        references: list of token lists.
        hypotheses: list of token lists, as many.
        max_order: int, the longest n-gram.
        smooth: `"exp"` or `"none"`.

    Returns:
        float in `[0, 100]`.

    Example:

    >>> round(corpus_bleu([["a", "b", "c", "d"]], [["a", "b", "c", "d"]]), 6)
    100.0

    Reference:
        - [Papineni et al., 2002, "BLEU"](https://aclanthology.org/P02-1040/).
        - [Post, 2018, "A Call for Clarity in Reporting BLEU Scores"](
          https://aclanthology.org/W18-6319/) (sacreBLEU).
    """
    if len(references) != len(hypotheses):
        raise ValueError(
            "`corpus_bleu`: `references` and `hypotheses` must have the same "
            f"length. Received: {len(references)} and {len(hypotheses)}"
        )
    if smooth not in ("exp", "none"):
        raise ValueError(
            f"`corpus_bleu`: `smooth` must be 'exp' or 'none'. Received: {smooth!r}"
        )
    matches = [0] * max_order
    totals = [0] * max_order
    ref_length = hyp_length = 0
    for reference, hypothesis in zip(references, hypotheses):
        reference, hypothesis = list(reference), list(hypothesis)
        ref_length += len(reference)
        hyp_length += len(hypothesis)
        for n in range(1, max_order + 1):
            hyp_counts = _ngrams(hypothesis, n)
            ref_counts = _ngrams(reference, n)
            matches[n - 1] += sum(
                min(count, ref_counts[gram]) for gram, count in hyp_counts.items()
            )
            totals[n - 1] += max(len(hypothesis) - n + 1, 0)
    if hyp_length == 0:
        return 0.0
    log_precision = 0.0
    k = 1
    for match, total in zip(matches, totals):
        if total == 0:
            return 0.0
        if match == 0:
            if smooth == "none":
                return 0.0
            k *= 2
            precision = 1.0 / (k * total)
        else:
            precision = match / total
        log_precision += math.log(precision) / max_order
    brevity = 1.0 if hyp_length > ref_length else math.exp(1 - ref_length / hyp_length)
    return 100.0 * brevity * math.exp(log_precision)


def token_accuracy(labels, predictions, pad_token_id=0):
    """Share of non-padding label positions predicted exactly.

    Args:
        labels: int array `(batch, T)`.
        predictions: int array `(batch, T)`.
        pad_token_id: the padding id, left out.

    Returns:
        float.
    """
    import numpy as np

    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    keep = labels != pad_token_id
    if not keep.any():
        return float("nan")
    return float(np.mean(predictions[keep] == labels[keep]))
