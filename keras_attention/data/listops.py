"""ListOps (Long Range Arena), generated locally as a tensorflow-datasets
builder: `tfds.load("listops/small")` works offline once `keras_attention`
is imported.

An example is a nested list expression over the digits 0-9 and four
operators, written with LRA's tokens, e.g. `[MAX 2 9 [MIN 4 7 ] 0 ]`; the
label is its value (10 classes):

- `[MIN ... ]`, `[MAX ... ]`: minimum / maximum of the arguments;
- `[MED ... ]`: median (`int(numpy.median(...))`, as in LRA's generator);
- `[SM ... ]`: sum modulo 10.

Expressions are drawn like LRA's generator does: a node below the maximum
depth is an operator with probability `operator_probability` (else a
digit), an operator takes 2 to `max_args` arguments, and expressions whose
token count falls outside `[min_length, max_length]` are drawn again.
Everything comes from a seeded `random.Random`, so a config always gives
the same examples.

Configs:

- `"small"` (default): lengths 32-128, 20,000 / 2,000 / 2,000 examples.
  Sized for a 2-core CPU: it generates in about 15 seconds, and a small
  transformer passes LRA's Transformer score (0.36) in a few minutes, yet
  answering still means combining digits up to a hundred tokens apart
  through up to ten levels of nested operators.
- `"lra"`: LRA's setting, lengths 500-2,000, 96,000 / 2,000 / 2,000
  examples (several minutes to generate in pure Python).

Reference:
    - [Nangia & Bowman, 2018, "ListOps: A Diagnostic Dataset for Latent
      Tree Learning"](https://arxiv.org/abs/1804.06028).
    - [Tay et al., 2020, "Long Range Arena"](
      https://arxiv.org/abs/2011.04006), section 3.1.
"""

import dataclasses
import random

import numpy as np
import tensorflow_datasets as tfds

PAD = "<pad>"
DIGITS = tuple(str(d) for d in range(10))
OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
END = "]"
_VOCABULARY = (PAD,) + DIGITS + OPERATORS + (END,)
_IDS = {token: i for i, token in enumerate(_VOCABULARY)}
NUM_CLASSES = 10
MAX_DEPTH = 10


def listops_vocabulary():
    """Token strings in id order; id 0 is padding."""
    return list(_VOCABULARY)


def _apply(operator, args):
    if operator == "[MIN":
        return min(args)
    if operator == "[MAX":
        return max(args)
    if operator == "[MED":
        return int(np.median(args))
    return sum(args) % 10


def evaluate_listops(text):
    """The value of a ListOps expression (its label).

    Args:
        text: tokens separated by spaces, e.g. `"[SM 3 [MAX 2 9 ] ]"`.

    Returns:
        int in `[0, 9]`.

    Raises:
        ValueError: if `text` is not a well-formed expression.
    """
    tokens = text.split() if isinstance(text, str) else list(text)
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
            value = _apply(operator, args)
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
    """Token ids (int32 array) of an expression; see `listops_vocabulary`."""
    tokens = text.split()
    unknown = [t for t in tokens if t not in _IDS or t == PAD]
    if unknown:
        raise ValueError(
            f"ListOps: unknown token(s) {unknown[:5]}; expected digits, "
            f"{', '.join(OPERATORS)} and ']'"
        )
    return np.array([_IDS[t] for t in tokens], dtype="int32")


def decode_listops(ids):
    """The expression (space-separated tokens) of token ids; padding dropped."""
    return " ".join(_VOCABULARY[int(i)] for i in ids if int(i) != 0)


def _draw(rng, depth, max_args, operator_probability, budget, out):
    """Appends one random (sub)expression's tokens to `out`.

    Stops early (returns False) once `out` holds more than `budget` tokens,
    so oversized draws are abandoned cheaply.
    """
    if depth >= MAX_DEPTH or rng.random() >= operator_probability:
        out.append(rng.choice(DIGITS))
        return len(out) <= budget
    out.append(rng.choice(OPERATORS))
    for _ in range(rng.randint(2, max_args)):
        if not _draw(rng, depth + 1, max_args, operator_probability, budget, out):
            return False
    out.append(END)
    return len(out) <= budget


def generate_listops(
    count,
    min_length,
    max_length,
    seed,
    max_args=10,
    operator_probability=0.25,
):
    """Yields `count` expressions (token lists) with lengths in range.

    Args:
        count: int, number of expressions.
        min_length, max_length: token-count range (inclusive).
        seed: int, seed of the `random.Random` generator.
        max_args: int, most arguments of an operator (LRA: 10).
        operator_probability: float, probability that a node below the
            maximum depth is an operator (LRA: 0.25).
    """
    rng = random.Random(seed)
    made = 0
    while made < count:
        tokens = [rng.choice(OPERATORS)]  # the root is always an operator
        ok = True
        for _ in range(rng.randint(2, max_args)):
            if not _draw(rng, 2, max_args, operator_probability, max_length - 1, tokens):
                ok = False
                break
        if not ok:
            continue
        tokens.append(END)
        if min_length <= len(tokens) <= max_length:
            made += 1
            yield tokens


@dataclasses.dataclass
class ListopsConfig(tfds.core.BuilderConfig):
    """A ListOps config: length range, split sizes, seed.

    Attributes:
        min_length, max_length: token-count range of the expressions.
        train_size, validation_size, test_size: examples per split.
        seed: base seed; each split draws from its own seed derived from it.
        max_args: most arguments per operator.
        operator_probability: probability that an inner node is an operator.
    """

    min_length: int = 32
    max_length: int = 128
    train_size: int = 20_000
    validation_size: int = 2_000
    test_size: int = 2_000
    seed: int = 0
    max_args: int = 10
    operator_probability: float = 0.25


_SPLITS = ("train", "validation", "test")


class Listops(tfds.core.GeneratorBasedBuilder):
    """ListOps expressions generated locally (no download)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "LRA-style generator, generated locally."}
    BUILDER_CONFIGS = [
        ListopsConfig(
            name="small",
            description="Lengths 32-128, 20k/2k/2k examples: CPU-sized.",
        ),
        ListopsConfig(
            name="lra",
            description="Long Range Arena's setting: lengths 500-2000, 96k/2k/2k.",
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
        size = getattr(config, f"{split}_size")
        seed = config.seed * 1000 + _SPLITS.index(split)
        expressions = generate_listops(
            size,
            config.min_length,
            config.max_length,
            seed,
            max_args=config.max_args,
            operator_probability=config.operator_probability,
        )
        for i, tokens in enumerate(expressions):
            yield i, {
                "tokens": np.array([_IDS[t] for t in tokens], dtype=np.int32),
                "label": evaluate_listops(tokens),
                "length": len(tokens),
                "text": " ".join(tokens),
            }


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


def listops_config(config="small", **overrides):
    """A ListOps config: a named one (`"small"`, `"lra"`) with fields changed.

    Args:
        config: the base config's name.
        **overrides: `ListopsConfig` fields to change (`min_length`,
            `max_length`, `train_size`, `validation_size`, `test_size`,
            `seed`, `max_args`, `operator_probability`).

    Returns:
        The named config's name when nothing changes, else a `ListopsConfig`
        whose name records the changes (so tfds keeps each variant's data
        apart), e.g. `small-max_length128-seed3`.

    Example:

    >>> listops_config("small", max_length=128, seed=3).name
    'small-max_length128-seed3'
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
    if not 2 <= fields["min_length"] <= fields["max_length"]:
        raise ValueError(
            "ListOps: need 2 <= min_length <= max_length. Received: "
            f"min_length={fields['min_length']}, max_length={fields['max_length']}"
        )
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
    `None`).

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
        (batch,))`; training splits drop the last partial batch.
    """
    import tensorflow as tf

    builder = (
        tfds.builder("listops", config=config, data_dir=data_dir)
        if isinstance(config, ListopsConfig)
        else tfds.builder(f"listops/{config}", data_dir=data_dir)
    )
    builder.download_and_prepare()
    longest = builder.builder_config.max_length
    max_length = max_length or longest
    if max_length < longest:
        raise ValueError(
            f"ListOps: `max_length` ({max_length}) must be at least the "
            f"config's longest expression ({longest}); make a config with "
            f"`listops_config(max_length={max_length})` instead."
        )
    training = split.startswith("train")
    shuffle = training if shuffle is None else shuffle
    ds = builder.as_dataset(split=split, as_supervised=True)
    ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    ds = ds.padded_batch(
        batch_size,
        padded_shapes=([max_length], []),
        drop_remainder=training,
    )
    return ds.prefetch(tf.data.AUTOTUNE)
