"""Autoregressive decoding: samplers, the shared decode loop, beam search.

The builders that generate (`language_model`, `seq2seq`) describe one
decoding step as a function

    step(token_ids, cache, index, compute_logits=True) -> (logits, cache)

mapping the `(batch, n)` tokens at positions `index ... index + n - 1` and
a key/value cache (any nest of tensors whose leading axis is the batch) to
the `(batch, n, vocabulary)` next-token logits (or `None` when
`compute_logits=False`) and the updated cache. `index` is the Python int
`0` for the prefill (the prompt in one call) and a scalar tensor in the
loop. With `cache=None` the step is the full forward pass over every
position up to the end of `token_ids` (decoding without a cache).

`decode` (greedy, top-k, top-p sampling) and `beam_search` run the token
loop with `keras.ops.while_loop`, one step per new token, over a fixed-size
token buffer (static shapes); `compile_decoder` wraps a decoding function
in `tf.function(jit_compile=True)` on TensorFlow, so the whole loop is one
XLA program.
"""

import weakref

import keras
from keras import ops

from keras_attention.arguments import argument_error

SAMPLERS = ("greedy", "top_k", "top_p")

# Scores of impossible beams: far below any real log-probability, finite so
# that sums stay well defined.
_IMPOSSIBLE = -1e9




def check_sampler(function, sampler, temperature, top_k, top_p):
    """Raises a clear `ValueError` for bad sampler arguments."""
    if sampler not in SAMPLERS:
        raise argument_error(
            function, "sampler", f"must be one of {list(SAMPLERS)}", f"sampler={sampler!r}"
        )
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not temperature > 0
    ):
        raise argument_error(
            function,
            "temperature",
            "must be a positive float",
            f"temperature={temperature!r}",
        )
    if sampler == "top_k":
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise argument_error(
                function,
                "top_k",
                "must be a positive int with sampler='top_k'",
                f"top_k={top_k!r}",
            )
    elif top_k is not None:
        raise argument_error(
            function, "top_k", "is used by sampler='top_k' only", f"sampler={sampler!r}, top_k={top_k!r}"
        )
    if sampler == "top_p":
        if (
            isinstance(top_p, bool)
            or not isinstance(top_p, (int, float))
            or not 0 < top_p <= 1
        ):
            raise argument_error(
                function,
                "top_p",
                "must be a float in (0, 1] with sampler='top_p'",
                f"top_p={top_p!r}",
            )
    elif top_p is not None:
        raise argument_error(
            function, "top_p", "is used by sampler='top_p' only", f"sampler={sampler!r}, top_p={top_p!r}"
        )


def sample_logits(
    logits, sampler="greedy", temperature=1.0, top_k=None, top_p=None, seed=None
):
    """Picks one token per row of `(batch, vocabulary)` logits.

    - `"greedy"`: the most likely token (the first one on ties);
    - `"top_k"`: a token drawn from the `top_k` most likely ones, with
      probabilities `softmax(logits / temperature)` renormalised over them;
    - `"top_p"` (nucleus sampling): a token drawn from the smallest set of
      most likely tokens whose probability reaches `top_p` (the most likely
      token always belongs to it).

    `top_k=1` and a tiny `top_p` are therefore greedy.

    Args:
        logits: float tensor `(batch, vocabulary)`.
        sampler: `"greedy"`, `"top_k"` or `"top_p"`.
        temperature: positive float dividing the logits before sampling.
        top_k: int, with `"top_k"`.
        top_p: float in `(0, 1]`, with `"top_p"`.
        seed: int or `keras.random.SeedGenerator` for the draws.

    Returns:
        int32 tensor `(batch,)`.

    Example:

    >>> logits = keras.ops.convert_to_tensor([[0.1, 2.0, -1.0]])
    >>> int(sample_logits(logits)[0])
    1
    >>> int(sample_logits(logits, "top_k", top_k=1, seed=0)[0])
    1

    Reference:
        - [Fan et al., 2018, "Hierarchical Neural Story Generation"](
          https://arxiv.org/abs/1805.04833) (top-k).
        - [Holtzman et al., 2020, "The Curious Case of Neural Text
          Degeneration"](https://arxiv.org/abs/1904.09751) (top-p).
    """
    logits = ops.cast(logits, "float32")
    if sampler == "greedy":
        return ops.cast(ops.argmax(logits, axis=-1), "int32")
    logits = logits / float(temperature)
    vocabulary = logits.shape[-1]
    if sampler == "top_k":
        values, indices = ops.top_k(logits, min(int(top_k), vocabulary))
    else:
        # Sorted, most likely first (`top_k` keeps the lower index first on
        # ties, as `argmax` does).
        values, indices = ops.top_k(logits, vocabulary)
        probabilities = ops.softmax(values, axis=-1)
        before = ops.cumsum(probabilities, axis=-1) - probabilities
        keep = before < float(top_p)
        values = ops.where(keep, values, ops.full_like(values, _IMPOSSIBLE))
    choice = keras.random.categorical(values, 1, dtype="int32", seed=seed)
    return ops.cast(
        ops.take_along_axis(indices, choice, axis=-1)[:, 0], "int32"
    )


def _slice_column(x, index):
    """`x[:, index]` for a scalar (tensor) index, keeping the axis."""
    return ops.slice(
        x,
        (0, index) + (0,) * (len(x.shape) - 2),
        (ops.shape(x)[0], 1) + tuple(x.shape[2:]),
    )


def prompt_lengths(prompt_ids, pad_token_id=0):
    """Number of tokens before the padding of right-padded prompts."""
    return ops.sum(
        ops.cast(ops.not_equal(prompt_ids, pad_token_id), "int32"), axis=-1
    )


def decode(
    step,
    prompt_ids,
    max_length,
    cache=None,
    sample=None,
    end_token_id=None,
    pad_token_id=0,
):
    """The token loop: prefill, then one step per new token.

    The prompts are right-padded with `pad_token_id`; a row keeps its own
    prompt tokens, so rows of different lengths decode together (the loop
    starts after the shortest prompt, as in KerasHub). A row that produces
    `end_token_id` is finished: its later positions are padding, and the
    loop stops when every row has finished (or the buffer is full).

    Args:
        step: the step function (see the module docstring).
        prompt_ids: int tensor `(batch, prompt_length)`, at least one token
            per row.
        max_length: int, tokens in the returned buffer (prompt + new).
        cache: the initial (empty) cache, or `None` to run the full forward
            pass at every step instead.
        sample: function `(batch, vocabulary)` logits -> `(batch,)` ids.
            Defaults to greedy.
        end_token_id: int or `None`.
        pad_token_id: int.

    Returns:
        int32 tensor `(batch, max_length)`: prompt, new tokens, padding.
    """
    sample = sample or sample_logits
    prompt_ids = ops.cast(prompt_ids, "int32")
    batch, prompt_length = prompt_ids.shape
    batch = ops.shape(prompt_ids)[0] if batch is None else batch
    tokens = ops.pad(
        prompt_ids,
        ((0, 0), (0, max_length - prompt_length)),
        constant_values=pad_token_id,
    )
    lengths = prompt_lengths(prompt_ids, pad_token_id)
    uncached = cache is None
    if uncached:
        cache = ()  # no loop state
    else:
        _, cache = step(prompt_ids, cache, 0, compute_logits=False)
    start = ops.maximum(ops.min(lengths), 1) - 1
    done = ops.zeros((batch,), "bool")

    def cond(index, tokens, cache, done):
        return ops.logical_and(
            index < max_length - 1, ops.logical_not(ops.all(done))
        )

    def body(index, tokens, cache, done):
        if uncached:
            logits, _ = step(tokens[:, : max_length - 1], None, 0)
            logits = _slice_column(logits, index)
        else:
            logits, cache = step(_slice_column(tokens, index), cache, index)
        position = index + 1
        chosen = sample(logits[:, -1])
        given = _slice_column(tokens, position)[:, 0]
        in_prompt = position < lengths
        chosen = ops.where(done, ops.full_like(chosen, pad_token_id), chosen)
        chosen = ops.where(in_prompt, given, chosen)
        tokens = ops.slice_update(tokens, (0, position), chosen[:, None])
        if end_token_id is not None:
            done = ops.logical_or(
                done,
                ops.logical_and(
                    ops.logical_not(in_prompt), ops.equal(chosen, end_token_id)
                ),
            )
        return position, tokens, cache, done

    _, tokens, _, _ = ops.while_loop(cond, body, (start, tokens, cache, done))
    return tokens


def length_penalty_factor(lengths, alpha):
    """GNMT length penalty `((5 + length) / 6) ** alpha` (1 for alpha=0)."""
    lengths = ops.cast(lengths, "float32")
    return ops.power((5.0 + lengths) / 6.0, float(alpha))


def beam_search(
    step,
    prompt_ids,
    max_length,
    cache,
    beam_size,
    length_penalty=0.0,
    end_token_id=None,
    pad_token_id=0,
):
    """Beam search over the step function, with a key/value cache.

    Keeps the `beam_size` most likely sequences (sum of token
    log-probabilities) of every batch row. A beam that produces
    `end_token_id` is finished: it keeps its score and is extended with
    padding. At the end, each row returns the beam with the best score
    divided by the GNMT length penalty `((5 + length) / 6) ** length_penalty`
    (`length` counts the new tokens, the end token included), so
    `length_penalty > 0` favours longer outputs and `0` ranks by
    log-probability. `beam_size=1` is greedy decoding.

    Args:
        step: the step function (see the module docstring); `cache` leaves
            have the batch as leading axis and are repeated per beam.
        prompt_ids: int tensor `(batch, prompt_length)`, every row a full
            prompt (no padding).
        max_length: int, tokens in the returned buffer (prompt + new).
        cache: the initial (empty) cache.
        beam_size: positive int.
        length_penalty: float `alpha >= 0`.
        end_token_id: int or `None`.
        pad_token_id: int.

    Returns:
        `(tokens, scores)`: int32 `(batch, max_length)` and the float32
        `(batch,)` length-normalised log-probabilities of the chosen beams.

    Reference:
        - [Wu et al., 2016, "Google's Neural Machine Translation System"](
          https://arxiv.org/abs/1609.08144) (length penalty).
    """
    prompt_ids = ops.cast(prompt_ids, "int32")
    batch, prompt_length = prompt_ids.shape
    batch = ops.shape(prompt_ids)[0] if batch is None else batch
    k = beam_size
    _, cache = step(prompt_ids, cache, 0, compute_logits=False)

    def per_beam(x):
        return ops.repeat(x, k, axis=0)

    tokens = per_beam(
        ops.pad(
            prompt_ids,
            ((0, 0), (0, max_length - prompt_length)),
            constant_values=pad_token_id,
        )
    )
    cache = keras.tree.map_structure(per_beam, cache)
    first = ops.one_hot(ops.zeros((batch,), "int32"), k, dtype="float32")
    scores = (1.0 - first) * _IMPOSSIBLE
    finished = ops.zeros((batch, k), "bool")
    lengths = ops.zeros((batch, k), "int32")

    def cond(index, tokens, cache, scores, finished, lengths):
        return ops.logical_and(
            index < max_length - 1, ops.logical_not(ops.all(finished))
        )

    def body(index, tokens, cache, scores, finished, lengths):
        logits, cache = step(_slice_column(tokens, index), cache, index)
        logits = ops.cast(logits[:, -1], "float32")
        vocabulary = logits.shape[-1]
        log_probs = ops.reshape(
            ops.log_softmax(logits, axis=-1), (batch, k, vocabulary)
        )
        # A finished beam goes on with padding, at no cost.
        padding = ops.one_hot(
            ops.full((batch, k), pad_token_id, "int32"), vocabulary, dtype="float32"
        )
        log_probs = ops.where(
            finished[..., None], (1.0 - padding) * _IMPOSSIBLE, log_probs
        )
        candidates = ops.reshape(
            scores[..., None] + log_probs, (batch, k * vocabulary)
        )
        scores, best = ops.top_k(candidates, k)
        beam = best // vocabulary
        token = ops.cast(best % vocabulary, "int32")
        rows = ops.reshape(
            ops.arange(batch, dtype="int32")[:, None] * k + ops.cast(beam, "int32"),
            (-1,),
        )

        def gather(x):
            return ops.take(x, rows, axis=0)

        tokens = gather(tokens)
        cache = keras.tree.map_structure(gather, cache)
        finished = ops.take_along_axis(finished, beam, axis=1)
        lengths = ops.take_along_axis(lengths, beam, axis=1)
        position = index + 1
        tokens = ops.slice_update(
            tokens, (0, position), ops.reshape(token, (-1, 1))
        )
        lengths = lengths + ops.cast(ops.logical_not(finished), "int32")
        if end_token_id is not None:
            finished = ops.logical_or(finished, ops.equal(token, end_token_id))
        return position, tokens, cache, scores, finished, lengths

    start = ops.convert_to_tensor(prompt_length - 1, "int32")
    _, tokens, _, scores, _, lengths = ops.while_loop(
        cond, body, (start, tokens, cache, scores, finished, lengths)
    )
    normalised = scores / length_penalty_factor(ops.maximum(lengths, 1), length_penalty)
    choice = ops.cast(ops.argmax(normalised, axis=1), "int32")
    tokens = ops.reshape(tokens, (batch, k, max_length))
    tokens = ops.take_along_axis(tokens, choice[:, None, None], axis=1)[:, 0]
    best = ops.take_along_axis(normalised, choice[:, None], axis=1)[:, 0]
    return tokens, best


# --------------------------------------------------------------------------
# compiled decoding functions, one per model and configuration
# --------------------------------------------------------------------------
_COMPILED = weakref.WeakKeyDictionary()


def compile_decoder(function, jit_compile=True):
    """`tf.function(function, jit_compile=...)` on TensorFlow.

    The whole decoding loop (prefill and every step) then runs as one XLA
    program. On other backends the function runs as it is.
    """
    if keras.backend.backend() != "tensorflow":
        return function
    import tensorflow as tf

    return tf.function(function, jit_compile=jit_compile)


def cached_decoder(model, key, make):
    """The compiled function `make()` for `model` and `key`, built once.

    Compiled functions are kept per model (weakly) and configuration, so
    repeated calls reuse the traced XLA program (a new input shape traces
    it again).
    """
    functions = _COMPILED.setdefault(model, {})
    if key not in functions:
        functions[key] = make()
    return functions[key]


def seeded_sampler(sampler, temperature, top_k, top_p):
    """`(sample, seed_generator)`: a sampling function and its generator.

    The generator's state is a variable, so a compiled loop draws fresh
    numbers at every step; `reseed(generator, seed)` before a run makes it
    reproducible.
    """
    generator = None
    if sampler != "greedy":
        generator = keras.random.SeedGenerator(0)

    def sample(logits):
        return sample_logits(
            logits,
            sampler,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=generator,
        )

    return sample, generator


def reseed(generator, seed):
    """Resets a `SeedGenerator` to `seed` (a random one when `None`)."""
    if generator is None:
        return
    if seed is None:
        import random

        seed = random.randint(0, 2**31 - 1)
    generator.state.assign(
        ops.convert_to_tensor([int(seed), 0], dtype=generator.state.dtype)
    )
