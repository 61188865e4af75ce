"""`language_model`: a decoder-only causal transformer, and `generate`."""

import keras
from keras import ops

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_positive_int
from keras_attention.arguments import check_rate
from keras_attention.arguments import check_choice
from keras_attention.arguments import check_heads
from keras_attention.layers.transformer.transformer_decoder import TransformerDecoder
from keras_attention.models import common
from keras_attention.models import generation

BUILDER = "language_model"


def language_model(
    vocabulary_size,
    sequence_length,
    hidden_dim=128,
    num_layers=2,
    num_heads=4,
    intermediate_dim=None,
    dropout=0.1,
    attention="multi_head",
    attention_kwargs=None,
    position="learned",
    name=BUILDER,
):
    """A decoder-only (GPT-style) causal language model: ids in, logits out.

    Token + position embedding, `num_layers` pre-norm `TransformerDecoder`
    blocks (causal self-attention with the chosen variant, no
    cross-attention), a final `LayerNormalization` and the logits layer.
    Position `t` of the output predicts token `t + 1`. Padding is
    right-padding with id 0: causal attention keeps it away from the real
    tokens, and `compile_language_model` leaves it out of the loss.

    `generate` decodes from the trained model with a key/value cache; it
    finds the layers by name (`"embedding"`, `"decoder_<i>"`,
    `"decoder_norm"`, `"logits"`), which a `.keras` round trip keeps.

    Args:
        vocabulary_size: int, number of token ids (id 0 = padding).
        sequence_length: int, the training length (XLA wants static
            shapes). Generation reads at most this many tokens.
        hidden_dim: int, model width.
        num_layers: int, number of decoder blocks.
        num_heads: int, attention heads (must divide `hidden_dim`).
        intermediate_dim: int, feed-forward width. Defaults to
            `4 * hidden_dim`.
        dropout: float in `[0, 1)`.
        attention: a registered attention variant name (see
            `keras_attention.layers.available()`) that supports causal
            masks, or a class, config or layer. Cached generation needs a
            variant whose `attend()` takes no positions from tensor indices
            (e.g. `"multi_head"`, `"linear"`, `"dynamic"`); the others
            generate with `use_cache=False`.
        attention_kwargs: dict, extra constructor arguments of the variant;
            length-dependent ones default from `sequence_length`.
        position: `"learned"` or `"sinusoidal"` position embedding.
        name: model name.

    Returns:
        An uncompiled functional `keras.Model` mapping int
        `(batch, sequence_length)` token ids to float
        `(batch, sequence_length, vocabulary_size)` next-token logits.

    Example:

    >>> model = language_model(
    ...     vocabulary_size=100, sequence_length=16, hidden_dim=32,
    ...     num_layers=1, num_heads=2,
    ... )
    >>> model = compile_language_model(model)
    >>> tokens = np.random.randint(1, 100, (8, 17))
    >>> # model.fit(tokens[:, :-1], tokens[:, 1:], epochs=1)
    >>> ids = generate(model, tokens[:2, :4], max_new_tokens=6)
    >>> tuple(ids.shape)
    (2, 10)

    Reference:
        - [Radford et al., 2019, "Language Models are Unsupervised Multitask
          Learners"](https://openai.com/research/better-language-models).
    """
    check_positive_int(BUILDER, "vocabulary_size", vocabulary_size)
    check_positive_int(BUILDER, "sequence_length", sequence_length)
    check_heads(BUILDER, hidden_dim, num_heads)
    check_positive_int(BUILDER, "num_layers", num_layers)
    check_positive_int(
        BUILDER, "intermediate_dim", intermediate_dim, allow_none=True
    )
    check_rate(BUILDER, "dropout", dropout)
    check_choice(BUILDER, "position", position, ("learned", "sinusoidal"))
    attention, attention_kwargs = common.attention_arguments(
        BUILDER, attention, attention_kwargs, sequence_length
    )
    tokens = keras.Input((sequence_length,), dtype="int32", name="tokens")
    x = common.embed_tokens(
        tokens,
        vocabulary_size=vocabulary_size,
        sequence_length=sequence_length,
        hidden_dim=hidden_dim,
        dropout=dropout,
        position=position,
        mask_zero=False,
    )
    x = decoder_stack(
        x,
        builder=BUILDER,
        num_layers=num_layers,
        num_heads=num_heads,
        intermediate_dim=intermediate_dim or 4 * hidden_dim,
        attention=attention,
        attention_kwargs=attention_kwargs,
        dropout=dropout,
    )
    logits = keras.layers.Dense(vocabulary_size, name="logits")(x)
    return keras.Model(tokens, logits, name=name)


def decoder_stack(
    x,
    *,
    builder,
    num_layers,
    num_heads,
    intermediate_dim,
    attention,
    attention_kwargs,
    dropout,
    encoded=None,
    cross_attention=None,
    cross_attention_kwargs=None,
):
    """`num_layers` pre-norm `TransformerDecoder` blocks and a final norm.

    Blocks are named `decoder_<i>` and the norm `decoder_norm`, the names
    the decoding helpers look for. With `encoded`, every block
    cross-attends to it.
    """
    for i in range(num_layers):
        block = TransformerDecoder(
            intermediate_dim=intermediate_dim,
            num_heads=num_heads,
            attention=attention,
            attention_kwargs=attention_kwargs,
            cross_attention=cross_attention,
            cross_attention_kwargs=cross_attention_kwargs,
            dropout=dropout,
            activation="gelu",
            norm_first=True,
            name=f"decoder_{i}",
        )
        # Built first so that a variant that cannot be causal is refused
        # here, with the builder's name, before the block's own check.
        block.build(x.shape, None if encoded is None else encoded.shape)
        _check_causal(builder, block, attention, x.shape)
        x = block(x) if encoded is None else block(x, encoded)
    return keras.layers.LayerNormalization(epsilon=1e-5, name="decoder_norm")(x)


def _check_causal(builder, block, attention, shape):
    """Raises now, naming the builder, if the self-attention can't be causal."""
    layer = block.self_attention_layer
    if not hasattr(layer, "check_call_arguments"):
        return
    try:
        layer.check_call_arguments(tuple(shape), tuple(shape), None, True)
    except ValueError as error:
        raise _not_causal(builder, attention, error) from None


def _not_causal(builder, attention, error):
    return argument_error(
        builder,
        "attention",
        f"must support causal self-attention ({error})",
        f"attention={attention!r}",
    )


@keras.saving.register_keras_serializable(package="keras_attention")
class TokenAccuracy(keras.metrics.SparseCategoricalAccuracy):
    """Next-token accuracy that leaves padding targets out.

    `SparseCategoricalAccuracy` over the positions whose target is not
    `ignore_class` (times any `sample_weight`).

    Args:
        ignore_class: int or `None`, the padding id (default 0).
        name: metric name.
        dtype: metric dtype.

    Example:

    >>> metric = TokenAccuracy()
    >>> metric.update_state([[2, 1, 0]], [[[0, 0, 1], [0, 1, 0], [1, 0, 0]]])
    >>> float(metric.result())
    1.0
    """

    def __init__(self, ignore_class=0, name="accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.ignore_class = ignore_class

    def update_state(self, y_true, y_pred, sample_weight=None):
        if self.ignore_class is not None:
            keep = ops.cast(
                ops.not_equal(ops.convert_to_tensor(y_true), self.ignore_class),
                "float32",
            )
            sample_weight = (
                keep
                if sample_weight is None
                else keep * ops.cast(sample_weight, "float32")
            )
        return super().update_state(y_true, y_pred, sample_weight=sample_weight)

    def get_config(self):
        return {**super().get_config(), "ignore_class": self.ignore_class}


def sequence_loss(pad_token_id=0):
    """Token cross-entropy from logits that leaves padding targets out."""
    return keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, ignore_class=pad_token_id
    )


def compile_language_model(model, learning_rate=1e-3, pad_token_id=0, **kwargs):
    """Compiles a next-token model: cross-entropy and accuracy off padding.

    Args:
        model: a model returning `(batch, T, vocabulary)` logits.
        learning_rate: peak learning rate.
        pad_token_id: int or `None`, the target id left out of loss and
            accuracy.
        **kwargs: passed to `keras_attention.models.compile_model`.

    Returns:
        The compiled model (AdamW, XLA).
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
def model_layer(model, name, function, builder):
    """`model.get_layer(name)`, or a ValueError saying that `function` decodes
    models built by `builder`."""
    try:
        return model.get_layer(name)
    except ValueError:
        raise ValueError(
            f"`{function}`: the model has no layer {name!r}; it decodes models "
            f"built by `{builder}` (layers {[l.name for l in model.layers]})"
        ) from None


def decoder_blocks(model, function, builder):
    """The `decoder_<i>` blocks of a model, in order."""
    names = {layer.name for layer in model.layers}
    blocks = []
    while f"decoder_{len(blocks)}" in names:
        blocks.append(model.get_layer(f"decoder_{len(blocks)}"))
    if not blocks:
        model_layer(model, "decoder_0", function, builder)
    return blocks


def check_cached_blocks(blocks, function):
    """Raises unless every block's self-attention decodes with a cache."""
    for block in blocks:
        layer = block.self_attention_layer
        if not hasattr(layer, "check_cache_support"):
            raise ValueError(
                f"`{function}`: the self-attention of block '{block.name}' "
                f"({type(layer).__name__}) has no key/value cache (it is not "
                "built on `BaseAttention`); pass `use_cache=False`."
            )
        layer.check_cache_support(1, causal=True)
        if block.has_cross_attention:
            block.cross_attention_layer.check_cache_support(1, causal=False)


def language_model_step(model, function="generate"):
    """The decoding step function of a `language_model` (see `generation`)."""
    embedding = model_layer(model, "embedding", function, BUILDER)
    norm = model_layer(model, "decoder_norm", function, BUILDER)
    head = model_layer(model, "logits", function, BUILDER)
    blocks = decoder_blocks(model, function, BUILDER)

    def step(token_ids, cache, index, compute_logits=True):
        x = embedding(token_ids, start_index=index)
        updated = []
        for i, block in enumerate(blocks):
            if cache is None:
                x = block(x)
            else:
                x, block_cache = block(
                    x,
                    self_attention_cache=cache[i],
                    self_attention_cache_update_index=index,
                )
                updated.append(block_cache)
        cache = None if cache is None else updated
        if not compute_logits:
            return None, cache
        return head(norm(x)), cache

    return step


def _check_prompt(function, prompt_ids, limit, max_new_tokens, limit_name):
    shape = tuple(prompt_ids.shape)
    if len(shape) != 2 or shape[1] is None or shape[1] < 1:
        raise argument_error(
            function,
            "prompt_ids",
            "must have shape (batch, prompt_length) with prompt_length >= 1",
            f"prompt_ids.shape={shape}",
        )
    check_positive_int(function, "max_new_tokens", max_new_tokens)
    if shape[1] + max_new_tokens > limit + 1:
        raise argument_error(
            function,
            "max_new_tokens",
            f"plus the prompt length ({shape[1]}) must be at most "
            f"{limit_name} + 1 = {limit + 1} (the model reads at most "
            f"{limit_name} tokens)",
            f"max_new_tokens={max_new_tokens}",
        )


def _generate_function(model, max_length, sampler, temperature, top_k, top_p, end_token_id, pad_token_id, use_cache, jit_compile):
    def make():
        sample, generator = generation.seeded_sampler(
            sampler, temperature, top_k, top_p
        )
        step = language_model_step(model)
        blocks = decoder_blocks(model, "generate", BUILDER)

        def run(prompt_ids):
            cache = None
            if use_cache:
                batch = ops.shape(prompt_ids)[0]
                cache = [
                    block.self_attention_layer.empty_cache(batch, max_length - 1)
                    for block in blocks
                ]
            return generation.decode(
                step,
                prompt_ids,
                max_length,
                cache=cache,
                sample=sample,
                end_token_id=end_token_id,
                pad_token_id=pad_token_id,
            )

        return generation.compile_decoder(run, jit_compile), generator

    key = (
        "generate", max_length, sampler, float(temperature), top_k, top_p,
        end_token_id, pad_token_id, use_cache, jit_compile,
    )
    return generation.cached_decoder(model, key, make)


def generate(
    model,
    prompt_ids,
    max_new_tokens,
    sampler="greedy",
    temperature=1.0,
    top_k=None,
    top_p=None,
    seed=None,
    end_token_id=None,
    pad_token_id=0,
    use_cache=True,
    jit_compile=True,
):
    """Continues prompts with a `language_model`, token by token.

    The prompt fills the key/value caches of every block in one call (the
    prefill); then one XLA-compiled `while_loop` adds one token per step,
    each step running the model on the newest token only, its attention
    reading the cache. Per new token the cost is therefore that of one
    position plus attention over the cache, whatever the prompt length.
    The compiled program is kept per model and configuration (the first
    call traces and compiles it).

    Prompts are right-padded with `pad_token_id`; each row keeps its own
    prompt and the loop starts after the shortest one (KerasHub's scheme).
    A row that samples `end_token_id` stops: the rest of it is padding, and
    the loop ends when every row has stopped.

    Args:
        model: a model built by `language_model` (trained or not).
        prompt_ids: int array `(batch, prompt_length)`, at least one token
            per row.
        max_new_tokens: int; `prompt_length + max_new_tokens` may be at most
            `sequence_length + 1`.
        sampler: `"greedy"`, `"top_k"` or `"top_p"` (see
            `generation.sample_logits`).
        temperature: positive float (sampling only).
        top_k: int, with `sampler="top_k"`.
        top_p: float in `(0, 1]`, with `sampler="top_p"`.
        seed: int, for reproducible sampling (`None`: a fresh one).
        end_token_id: int or `None`.
        pad_token_id: int, the padding id.
        use_cache: bool; `False` runs the full forward pass over the whole
            buffer at every step (any causal variant, much slower).
        jit_compile: bool, compile the loop with XLA (TensorFlow).

    Returns:
        int32 NumPy array `(batch, prompt_length + max_new_tokens)`: the
        prompts, the new tokens, padding after an end token.

    Example:

    ```python
    model = language_model(100, 16, hidden_dim=32, num_layers=1, num_heads=2)
    ids = generate(model, np.array([[5, 6, 7]]), max_new_tokens=5,
                   sampler="top_p", top_p=0.9, seed=1)
    ```
    """
    generation.check_sampler("generate", sampler, temperature, top_k, top_p)
    prompt_ids = ops.convert_to_tensor(prompt_ids, "int32")
    embedding = model_layer(model, "embedding", "generate", BUILDER)
    _check_prompt(
        "generate", prompt_ids, embedding.sequence_length, max_new_tokens, "sequence_length"
    )
    if use_cache:
        check_cached_blocks(decoder_blocks(model, "generate", BUILDER), "generate")
    max_length = int(prompt_ids.shape[1]) + max_new_tokens
    function, generator = _generate_function(
        model, max_length, sampler, temperature, top_k, top_p,
        end_token_id, pad_token_id, use_cache, jit_compile,
    )
    generation.reseed(generator, seed)
    return ops.convert_to_numpy(function(prompt_ids))


def export_generator(
    model,
    filepath,
    prompt_length,
    max_new_tokens,
    end_token_id=None,
    pad_token_id=0,
):
    """Exports greedy generation as a SavedModel endpoint (TensorFlow).

    The SavedModel's `serve` endpoint maps int32 prompts
    `(batch, prompt_length)` (right-padded) to int32
    `(batch, prompt_length + max_new_tokens)` ids, running the same cached,
    XLA-compiled loop as `generate`; it loads with TensorFlow alone
    (`tf.saved_model.load(filepath).serve(prompts)`).

    Args:
        model: a model built by `language_model`.
        filepath: the SavedModel directory.
        prompt_length: int, the served prompt length.
        max_new_tokens: int.
        end_token_id: int or `None`.
        pad_token_id: int.
    """
    import tensorflow as tf

    if isinstance(prompt_length, bool) or not isinstance(prompt_length, int) or prompt_length < 1:
        raise argument_error(
            "export_generator", "prompt_length", "must be a positive int", f"prompt_length={prompt_length!r}"
        )
    spec = keras.KerasTensor((None, prompt_length), "int32")
    embedding = model_layer(model, "embedding", "export_generator", BUILDER)
    _check_prompt(
        "export_generator", spec, embedding.sequence_length, max_new_tokens, "sequence_length"
    )
    check_cached_blocks(
        decoder_blocks(model, "export_generator", BUILDER), "export_generator"
    )
    function, _ = _generate_function(
        model, prompt_length + max_new_tokens, "greedy", 1.0, None, None,
        end_token_id, pad_token_id, True, True,
    )
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serve",
        function,
        input_signature=[tf.TensorSpec((None, prompt_length), tf.int32)],
    )
    archive.write_out(filepath, verbose=False)
