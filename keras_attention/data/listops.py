"""ListOps (Long Range Arena), generated locally as a tensorflow-datasets
builder: `tfds.load("listops")` works offline once `keras_attention.data`
is imported.

An example is a nested list expression over the digits 0-9 and four
operators, written with LRA's tokens, e.g. `[MAX 2 9 [MIN 4 7 ] 0 ]`; the
label is its value (10 classes):

- `[MIN ... ]`, `[MAX ... ]`: minimum / maximum of the arguments;
- `[MED ... ]`: median, truncated to an integer (`int(numpy.median(...))`,
  as in LRA's generator: the median of `1 5 2 8` is 3);
- `[SM ... ]`: sum modulo 10.

Expressions are drawn like LRA's generator (`generate_tree` in its
`listops_generate.py`) draws them: the root sits at depth 1; a node below
depth 10 is an operator with probability `operator_probability` (LRA: 0.25),
else a digit; an operator takes 2 to `max_args` (LRA: 10) arguments drawn
the same way; expressions whose token count falls outside
`[min_length, max_length]` are drawn again, and, as LRA keeps its samples in
a set, so are repeats within a split. Nesting is therefore at most 10 levels
deep counting the digits (9 nested operators). The root is drawn as an
operator straight away (a lone digit is always too short), and a draw is
abandoned as soon as it passes `max_length` tokens, which keeps generation
fast without changing which expressions come out. Everything comes from a
seeded `random.Random`, so a config always gives the same examples; each
split has its own seed. (LRA splits one pool, so its splits never share an
expression; separate seeds do not forbid it, but at these lengths a repeat
is vanishingly unlikely: there is none among the 24,000 expressions of
`"small"`, nor at lengths as short as 8-40 tokens.)

Token ids (`listops_vocabulary()`): 0 is padding, 1-10 the digits 0-9,
11-14 `[MIN` `[MAX` `[MED` `[SM`, 15 `]`.

Features:

- `"tokens"`: int32 token ids, `(None,)`: stored unpadded, so the files stay
  small and one prepared dataset serves any padded length; `load_listops`
  pads to a fixed length (static shapes for XLA).
- `"label"`: `ClassLabel(num_classes=10)`, the expression's value.
- `"length"`: int32 token count, for length statistics and bucketing
  without decoding.
- `"text"`: the expression as a string, for display and for models that
  take raw strings.

`supervised_keys` is `("tokens", "label")`.

Configs:

- `"small"` (default): lengths 32-128, 20,000 / 2,000 / 2,000 examples.
  Sized for a 2-core CPU: it generates in about 15 seconds, and a 2-layer
  transformer passes LRA's Transformer score (0.36, against 0.17 for
  always answering the most frequent class) within a few minutes, yet
  answering still means combining digits up to a hundred tokens apart
  through up to ten levels of nesting.
- `"lra"`: LRA's setting, lengths 500-2,000, 96,000 / 2,000 / 2,000
  examples: slow on a CPU (a few minutes of pure-Python generation and
  about 400 MB of files).

`listops_config` derives variants (lengths, sizes, seed, ...), named after
what they change so that tfds keeps their data apart.

Reference:
    - [Nangia & Bowman, 2018, "ListOps: A Diagnostic Dataset for Latent
      Tree Learning"](https://arxiv.org/abs/1804.06028).
    - [Tay et al., 2020, "Long Range Arena: A Benchmark for Efficient
      Transformers"](https://arxiv.org/abs/2011.04006), section 3.1, and
      its generator, https://github.com/google-research/long-range-arena
      (`lra_benchmarks/data/listops.py`).
"""

import dataclasses
import hashlib
import random

import numpy as np
import tensorflow_datasets as tfds

from keras_attention.arguments import check_int
from keras_attention.data.feeding import prefetched
from keras_attention.data.prepared import cache_in_memory

PAD = "<pad>"
DIGITS = tuple(str(d) for d in range(10))
_VALUES = tuple(range(10))
OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
END = "]"
_VOCABULARY = (PAD,) + DIGITS + OPERATORS + (END,)
_IDS = {token: i for i, token in enumerate(_VOCABULARY)}
NUM_CLASSES = 10
MAX_DEPTH = 10
# Consecutive draws without a new in-range expression before generation
# gives up (narrow but possible length ranges need a few thousand).
_MAX_FAILED_DRAWS = 1_000_000


def listops_vocabulary():
    """Token strings in id order; id 0 is padding.

    >>> listops_vocabulary()[:3], listops_vocabulary()[11:]
    (['<pad>', '0', '1'], ['[MIN', '[MAX', '[MED', '[SM', ']'])
    """
    return list(_VOCABULARY)


def _median(args):
    """`int(numpy.median(args))`: the mean of the middle pair, truncated."""
    ordered = sorted(args)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) // 2


def _sum_mod(args):
    return sum(args) % 10


_OPERATIONS = {"[MIN": min, "[MAX": max, "[MED": _median, "[SM": _sum_mod}


def _tokens(text, where):
    if isinstance(text, str):
        return text.split()
    if isinstance(text, (list, tuple)) and all(isinstance(t, str) for t in text):
        return list(text)
    raise TypeError(
        f"ListOps: `{where}` expects a string of space-separated tokens or a "
        f"list of token strings. Received: {text!r:.80}"
    )


def evaluate_listops(text):
    """The value of a ListOps expression (its label).

    Args:
        text: the expression, tokens separated by spaces (or a list of
            token strings).

    Returns:
        int in `[0, 9]`.

    Raises:
        ValueError: if `text` is not a well-formed expression.

    Example:

    >>> evaluate_listops("[MAX 2 9 [MIN 4 7 ] 0 ]")
    9
    >>> evaluate_listops("[SM 3 [MED 1 5 2 8 ] ]")  # 3 + int(3.5)
    6
    """
    tokens = _tokens(text, "evaluate_listops")
    stack = []
    result = None
    for position, token in enumerate(tokens):
        if result is not None:
            raise ValueError(f"ListOps: tokens after the end of the expression at {position}: {token!r}")
        if token in OPERATORS:
            stack.append((token, []))
        elif token in DIGITS:
            if not stack:
                if len(tokens) == 1:
                    return int(token)
                raise ValueError(f"ListOps: a digit outside any operator at {position}")
            stack[-1][1].append(int(token))
        elif token == END:
            if not stack:
                raise ValueError(f"ListOps: unmatched ']' at {position}")
            operator, args = stack.pop()
            if not args:
                raise ValueError(f"ListOps: {operator} without arguments at {position}")
            value = _OPERATIONS[operator](args)
            if stack:
                stack[-1][1].append(value)
            else:
                result = value
        else:
            raise ValueError(
                f"ListOps: unknown token {token!r} at {position}; expected a "
                f"digit, one of {OPERATORS} or ']'"
            )
    if stack or result is None:
        raise ValueError("ListOps: the expression is not closed")
    return result


def encode_listops(text):
    """Token ids (int32 array) of an expression; see `listops_vocabulary`.

    Args:
        text: tokens separated by spaces (or a list of token strings).

    Returns:
        int32 NumPy array, one id per token, no padding.

    Example:

    >>> encode_listops("[MAX 2 9 ]").tolist()
    [12, 3, 10, 15]
    """
    tokens = _tokens(text, "encode_listops")
    ids = np.array([_IDS.get(t, 0) for t in tokens], dtype="int32")
    if not ids.all():
        unknown = [t for t, i in zip(tokens, ids) if i == 0]
        raise ValueError(
            f"ListOps: unknown token(s) {unknown[:5]}; expected digits, "
            f"{', '.join(OPERATORS)} and ']'"
        )
    return ids


def decode_listops(ids):
    """The expression (space-separated tokens) of token ids; padding dropped.

    Args:
        ids: 1-D sequence (list, NumPy array, tensor) of token ids.

    Returns:
        str.

    Example:

    >>> decode_listops([12, 3, 10, 15, 0, 0])
    '[MAX 2 9 ]'
    """
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            "ListOps: `decode_listops` expects a 1-D sequence of integer token "
            f"ids. Received: shape {ids.shape}, dtype {ids.dtype}"
        )
    bad = ids[(ids < 0) | (ids >= len(_VOCABULARY))]
    if bad.size:
        raise ValueError(
            f"ListOps: token ids must be in [0, {len(_VOCABULARY) - 1}]. "
            f"Received: {bad[:5].tolist()}"
        )
    return " ".join(_VOCABULARY[i] for i in ids.tolist() if i != 0)


def _draw_operator(rng, depth, max_args, operator_probability, budget, out):
    """Appends a random operator node at `depth` to `out`; returns its value.

    An argument below `MAX_DEPTH` is an operator with probability
    `operator_probability`, else a digit. Returns `None` (the draw is
    abandoned) as soon as `out` holds more than `budget` tokens; the
    closing `]` is left for the caller to check.
    """
    operator = rng.choice(OPERATORS)
    out.append(operator)
    args = []
    child = depth + 1
    for _ in range(rng.randint(2, max_args)):
        if child >= MAX_DEPTH or rng.random() >= operator_probability:
            value = rng.choice(_VALUES)
            out.append(DIGITS[value])
        else:
            value = _draw_operator(rng, child, max_args, operator_probability, budget, out)
            if value is None:
                return None
        if len(out) > budget:
            return None
        args.append(value)
    out.append(END)
    return _OPERATIONS[operator](args)




def _check_fields(min_length, max_length, max_args, operator_probability):
    check_int("ListOps", "min_length", min_length, 1)
    check_int("ListOps", "max_length", max_length, 4)  # the shortest expression: [OP d d ]
    if min_length > max_length:
        raise ValueError(
            "ListOps: need min_length <= max_length. Received: "
            f"min_length={min_length}, max_length={max_length}"
        )
    check_int("ListOps", "max_args", max_args, 2)
    if not 0 < operator_probability <= 1:
        raise ValueError(
            "ListOps: `operator_probability` must be in (0, 1]. Received: "
            f"operator_probability={operator_probability!r}"
        )


def generate_listops(
    count,
    min_length,
    max_length,
    seed,
    max_args=10,
    operator_probability=0.25,
):
    """Draws `count` distinct expressions with lengths in range, LRA's way.

    Args:
        count: int, number of expressions.
        min_length, max_length: token-count range (inclusive).
        seed: int, seed of the `random.Random` generator.
        max_args: int, most arguments of an operator (LRA: 10).
        operator_probability: float, probability that a node below the
            maximum depth is an operator (LRA: 0.25).

    Returns:
        An iterator of `(tokens, label)`: the expression as a list of token
        strings and its value, computed while drawing (`evaluate_listops`
        computes the same from the tokens).

    Raises:
        ValueError: for arguments out of range (at the call), or when no new
            expression in range turns up in a million draws in a row (the
            range is too narrow, or holds fewer than `count` expressions).

    Example:

    >>> for tokens, label in generate_listops(2, 6, 12, seed=0):
    ...     assert 6 <= len(tokens) <= 12 and evaluate_listops(tokens) == label
    """
    check_int("ListOps", "count", count, 0)
    _check_fields(min_length, max_length, max_args, operator_probability)
    return _generate(count, min_length, max_length, seed, max_args, operator_probability)


def _generate(count, min_length, max_length, seed, max_args, operator_probability):
    rng = random.Random(seed)
    seen = set()
    failed = 0
    while len(seen) < count:
        if failed >= _MAX_FAILED_DRAWS:
            raise ValueError(
                f"ListOps: no new expression of {min_length}-{max_length} tokens "
                f"in {failed} draws after {len(seen)} of {count}; widen the "
                "length range or ask for fewer examples."
            )
        failed += 1
        # The root is always an operator (LRA's lone-digit draws never reach
        # its minimum length); its arguments leave room for its `]`.
        tokens = []
        label = _draw_operator(rng, 1, max_args, operator_probability, max_length - 1, tokens)
        if label is None or len(tokens) < min_length:
            continue
        key = hashlib.blake2b(" ".join(tokens).encode(), digest_size=16).digest()
        if key in seen:
            continue
        seen.add(key)
        failed = 0
        yield tokens, label


_SPLITS = ("train", "validation", "test")
_FIELDS = (
    "min_length",
    "max_length",
    "train_size",
    "validation_size",
    "test_size",
    "seed",
    "max_args",
    "operator_probability",
)


@dataclasses.dataclass
class ListopsConfig(tfds.core.BuilderConfig):
    """A ListOps config: length range, split sizes, seed.

    tfds stores a config's data under its name: give each variant its own
    name (`listops_config` does).

    Attributes:
        min_length, max_length: token-count range of the expressions
            (inclusive).
        train_size, validation_size, test_size: examples per split.
        seed: base seed; each split draws from its own seed derived from it.
        max_args: most arguments per operator.
        operator_probability: probability that an inner node is an operator.

    Example:

    >>> tiny = ListopsConfig(name="tiny", max_length=64, train_size=100,
    ...                      validation_size=10, test_size=10)
    >>> (tiny.min_length, tiny.max_length, tiny.seed)
    (32, 64, 0)
    """

    min_length: int = 32
    max_length: int = 128
    train_size: int = 20_000
    validation_size: int = 2_000
    test_size: int = 2_000
    seed: int = 0
    max_args: int = 10
    operator_probability: float = 0.25

    def __post_init__(self):
        _check_fields(self.min_length, self.max_length, self.max_args, self.operator_probability)
        for split in _SPLITS:
            check_int("ListOps", f"{split}_size", getattr(self, f"{split}_size"), 1)
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ValueError(f"ListOps: `seed` must be an integer. Received: seed={self.seed!r}")


class Listops(tfds.core.GeneratorBasedBuilder):
    """ListOps expressions generated locally (no download); see the module.

    Registered with tfds as `"listops"` (configs `"listops/small"`, the
    default, and `"listops/lra"`), with features `tokens` (int32 ids,
    unpadded), `label` (`ClassLabel(10)`), `length` (int32) and `text`.

    Example:

    ```python
    import tempfile

    import tensorflow_datasets as tfds

    import keras_attention  # registers "listops" with tfds

    # tfds.load("listops", split="train") builds the default "small"
    # config (about 15 s); a tiny variant:
    tiny = keras_attention.data.listops_config(
        "small", train_size=64, validation_size=16, test_size=16
    )
    ds = tfds.load(
        "listops",
        split="train",
        data_dir=tempfile.mkdtemp(),
        builder_kwargs={"config": tiny},
    )
    example = next(iter(ds))
    text = example["text"].numpy().decode()
    assert int(example["label"]) == keras_attention.data.evaluate_listops(text)
    ```
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "LRA-style generator, generated locally."}
    BUILDER_CONFIGS = [
        ListopsConfig(
            name="small",
            description="Lengths 32-128, 20k/2k/2k examples: CPU-sized.",
        ),
        ListopsConfig(
            name="lra",
            description="Long Range Arena's setting: lengths 500-2000, 96k/2k/2k (slow on a CPU).",
            min_length=500,
            max_length=2000,
            train_size=96_000,
        ),
    ]
    DEFAULT_CONFIG_NAME = "small"

    def _info(self):
        return self.dataset_info_from_configs(
            description=__doc__.split("\n\n")[0],
            features=tfds.features.FeaturesDict(
                {
                    "tokens": tfds.features.Tensor(shape=(None,), dtype=np.int32),
                    "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
                    "length": np.int32,
                    "text": tfds.features.Text(),
                }
            ),
            supervised_keys=("tokens", "label"),
            homepage="https://github.com/google-research/long-range-arena",
            citation=(
                "@article{tay2020long, title={Long Range Arena: A Benchmark for "
                "Efficient Transformers}, author={Tay, Yi and others}, "
                "journal={arXiv preprint arXiv:2011.04006}, year={2020}}"
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing is downloaded
        return {split: self._generate_examples(split) for split in _SPLITS}

    def _generate_examples(self, split):
        config = self.builder_config
        expressions = generate_listops(
            getattr(config, f"{split}_size"),
            config.min_length,
            config.max_length,
            seed=config.seed * 1000 + _SPLITS.index(split),
            max_args=config.max_args,
            operator_probability=config.operator_probability,
        )
        for i, (tokens, label) in enumerate(expressions):
            yield i, {
                "tokens": encode_listops(tokens),
                "label": label,
                "length": len(tokens),
                "text": " ".join(tokens),
            }


def listops_config(config="small", **overrides):
    """A ListOps config: a named one (`"small"`, `"lra"`) with fields changed.

    Args:
        config: the base config's name.
        **overrides: `ListopsConfig` fields to change (`min_length`,
            `max_length`, `train_size`, `validation_size`, `test_size`,
            `seed`, `max_args`, `operator_probability`); `None` keeps the
            base config's value.

    Returns:
        The named config's name when nothing changes, else a `ListopsConfig`
        whose name records the changes (so tfds keeps each variant's data
        apart), e.g. `small-max_length64-seed3`.

    Example:

    >>> listops_config("small", max_length=64, seed=3).name
    'small-max_length64-seed3'
    >>> listops_config("lra", seed=None)
    'lra'
    """
    named = {c.name: c for c in Listops.BUILDER_CONFIGS}
    if config not in named:
        raise ValueError(
            f"ListOps: `config` must be one of {sorted(named)}. Received: "
            f"config={config!r}"
        )
    unknown = sorted(set(overrides) - set(_FIELDS))
    if unknown:
        raise ValueError(
            f"ListOps: unknown config field(s) {unknown}; expected some of "
            f"{list(_FIELDS)}"
        )
    base = named[config]
    changed = {k: v for k, v in overrides.items() if v is not None and v != getattr(base, k)}
    if not changed:
        return config
    fields = {f: getattr(base, f) for f in _FIELDS}
    fields.update(changed)
    suffix = "-".join(f"{k}{changed[k]}" for k in _FIELDS if k in changed)
    return ListopsConfig(
        name=f"{config}-{suffix}",
        description=f"{config} with {changed}",
        **fields,
    )


def load_listops(
    split,
    data_dir=None,
    config="small",
    batch_size=32,
    max_length=None,
    shuffle=None,
    seed=0,
):
    """A batched `tf.data.Dataset` of `(token ids, label)` for XLA.

    Generates the data on first use (into `data_dir`, tfds' default when
    `None`), then reads it back, pads every expression to `max_length` and
    batches: every batch has the same static shape, except that evaluation
    splits keep their last, smaller batch.

    Args:
        split: `"train"`, `"validation"` or `"test"` (tfds split syntax
            works too, e.g. `"train[:10%]"`).
        data_dir: tensorflow-datasets data directory.
        config: `"small"`, `"lra"` or a `ListopsConfig` (see
            `listops_config`).
        batch_size: int.
        max_length: int, the padded length (static for XLA), at least the
            config's `max_length` (the default).
        shuffle: bool; defaults to `True` for training splits.
        seed: shuffle seed.

    Returns:
        A `tf.data.Dataset` of `(int32 (batch, max_length), int64
        (batch,))`; training splits drop the last partial batch, so their
        batch dimension is static too.

    Example:

    ```python
    import tempfile

    import keras_attention as ka

    config = ka.data.listops_config(
        "small", max_length=64, train_size=64, validation_size=16, test_size=16
    )
    train = ka.data.load_listops(
        "train", data_dir=tempfile.mkdtemp(), config=config, batch_size=16
    )
    assert train.element_spec[0].shape == (16, 64)
    ```
    """
    if isinstance(config, ListopsConfig):
        builder = tfds.builder("listops", config=config, data_dir=data_dir)
    else:
        name = listops_config(config)  # checks the name
        builder = tfds.builder(f"listops/{name}", data_dir=data_dir)
    check_int("ListOps", "batch_size", batch_size, 1)
    longest = builder.builder_config.max_length
    max_length = longest if max_length is None else max_length
    check_int("ListOps", "max_length", max_length, 1)
    if max_length < longest:
        raise ValueError(
            f"ListOps: `max_length` ({max_length}) must be at least the "
            f"config's longest expression ({longest}); make a config with "
            f"`listops_config(max_length={max_length})` instead."
        )
    builder.download_and_prepare()
    training = split.startswith("train")
    shuffle = training if shuffle is None else shuffle
    ds = cache_in_memory(builder.as_dataset(split=split, as_supervised=True))
    if shuffle:
        ds = ds.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    ds = ds.padded_batch(
        batch_size,
        padded_shapes=([max_length], []),
        drop_remainder=training,
    )
    return prefetched(ds)
