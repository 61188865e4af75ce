"""Extractive question answering on the `squad` tensorflow-datasets layout.

`squad_data(data_dir=...)` turns `context`, `question`, `answers/text` and
`answers/answer_start` into packed, fixed-length model inputs for
`keras_attention.models.question_answering`:

    position:    0      1 .. q       q+1    q+2 ..             T-1
    token_ids:   [CLS]  question     [SEP]  context ...  0 (padding)
    segment_ids: 0      0            0      1 ...        0

and the answer's character span into a token span (the targets).

Tokenisation is `keras.layers.TextVectorization`'s default, done in Python
so that every token keeps its character offsets: ASCII upper case to lower
case (as `tf.strings.lower` does), the same punctuation regex removed, and
a split on ASCII whitespace (as `tf.strings.split`); a chunk that is all
punctuation is no token. A `TextVectorization` given the returned
vocabulary therefore maps a text to the same ids (tested). A character span
maps to the tokens whose whitespace chunks it overlaps, and a predicted
token span maps back to the context text from its first chunk's start to
its last chunk's end.

Limits of this approach (all measured against SQuAD's own normalisation,
which also drops punctuation, so `"(1990)."` still matches `"1990"`):

- an answer that is part of a whitespace chunk cannot be cut out of it:
  `"1990s"` for the answer `"1990"`, `"state-of-the-art"` for `"art"`;
- punctuation inside a chunk is removed, not split on: `"don't"` is the
  token `"dont"`, `"U.S."` is `"us"`, hyphenated words are one token;
- non-ASCII punctuation and whitespace (e.g. `"\u2013"`, no-break spaces)
  stay inside tokens, as in `TextVectorization`;
- a context longer than the window is cut (no sliding window): training
  drops examples whose answer is cut off (`QuestionAnsweringData
  .train_dropped` counts them) and evaluation scores them as misses.
"""

import collections
import dataclasses
import re

import numpy as np

from keras_attention.data.feeding import prefetched
from keras_attention.data.prepared import load_prepared
from keras_attention.data.prepared import prepared_builder

# `TextVectorization`'s "lower_and_strip_punctuation" pieces.
STRIP_PUNCTUATION = re.compile(r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']')
_CHUNK = re.compile(r"[^ \t\n\r\f\v]+")
_ASCII_LOWER = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz"
)

PAD, UNK, CLS, SEP = 0, 1, 2, 3
SPECIAL_TOKENS = ("", "[UNK]", "[CLS]", "[SEP]")


def tokenize(text):
    """Tokens of `text` with their character offsets.

    Args:
        text: str (or UTF-8 bytes).

    Returns:
        `(tokens, offsets)`: the list of token strings and the list of
        `(start, end)` character offsets of their whitespace chunks in
        `text` (`text[start:end]` is the chunk, punctuation included).

    Example:

    >>> tokenize("It's (1990).")
    (['its', '1990'], [(0, 4), (5, 12)])
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    tokens, offsets = [], []
    for match in _CHUNK.finditer(text):
        token = STRIP_PUNCTUATION.sub("", match.group().translate(_ASCII_LOWER))
        if token:
            tokens.append(token)
            offsets.append(match.span())
    return tokens, offsets


def char_span_to_token_span(offsets, start_char, end_char):
    """The tokens a character span `[start_char, end_char)` overlaps.

    Args:
        offsets: list of `(start, end)` token character offsets.
        start_char, end_char: the span (end exclusive).

    Returns:
        `(first, last)` token indices (inclusive), or `None` when the span
        overlaps no token (empty, out of range or only whitespace /
        punctuation).
    """
    if end_char <= start_char:
        return None
    first = last = None
    for i, (start, end) in enumerate(offsets):
        if end > start_char and start < end_char:
            if first is None:
                first = i
            last = i
        elif start >= end_char:
            break
    if first is None:
        return None
    return first, last


def build_vocabulary(texts, vocabulary_size):
    """The `vocabulary_size` most frequent tokens, after the special ones.

    Args:
        texts: iterable of str.
        vocabulary_size: int, the total size (`""`, `"[UNK]"`, `"[CLS]"`,
            `"[SEP]"` included); ties keep first-seen order.

    Returns:
        A list of token strings (id -> token); id 0 is padding and 1 is
        `"[UNK]"`, as in `TextVectorization.get_vocabulary()`.
    """
    counts = collections.Counter()
    for text in texts:
        counts.update(tokenize(text)[0])
    for token in SPECIAL_TOKENS:
        counts.pop(token, None)
    words = [w for w, _ in counts.most_common(max(0, vocabulary_size - len(SPECIAL_TOKENS)))]
    return list(SPECIAL_TOKENS) + words


def encode_question_answering(question, context, vocabulary, sequence_length, question_length=32):
    """Packs one question and context into model inputs.

    Args:
        question, context: str.
        vocabulary: a list (id -> token) or a dict (token -> id).
        sequence_length: int, the packed length `T`.
        question_length: int, question tokens kept (the first ones).

    Returns:
        A dict: `token_ids` and `segment_ids` (int32 `(T,)`), `offsets`
        (int32 `(T, 2)`, the context character offsets of each position,
        `-1` outside the context), `context_start` (the position of the
        first context token) and `context_tokens` (how many context tokens
        fit).
    """
    index = vocabulary if isinstance(vocabulary, dict) else {t: i for i, t in enumerate(vocabulary)}
    question_tokens = tokenize(question)[0][:question_length]
    context_tokens, context_offsets = tokenize(context)
    token_ids = np.zeros(sequence_length, "int32")
    segment_ids = np.zeros(sequence_length, "int32")
    offsets = np.full((sequence_length, 2), -1, "int32")
    packed = [CLS] + [index.get(t, UNK) for t in question_tokens] + [SEP]
    packed = packed[:sequence_length]
    start = len(packed)
    kept = max(0, min(len(context_tokens), sequence_length - start))
    token_ids[:start] = packed
    token_ids[start:start + kept] = [index.get(t, UNK) for t in context_tokens[:kept]]
    segment_ids[start:start + kept] = 1
    if kept:
        offsets[start:start + kept] = context_offsets[:kept]
    return {
        "token_ids": token_ids,
        "segment_ids": segment_ids,
        "offsets": offsets,
        "context_start": start,
        "context_tokens": kept,
    }


def answer_positions(encoded, context, answer_text, answer_start):
    """The packed `(start, end)` positions of an answer, or `None` when it
    overlaps no token or does not fit whole in the window.

    Args:
        encoded: `encode_question_answering`'s result for `context`.
        context: str.
        answer_text: str, the answer (its length sets the span's end).
        answer_start: int, the answer's first character in `context`.
    """
    if not answer_text or not 0 <= answer_start < len(context):
        return None
    offsets = tokenize(context)[1]
    span = char_span_to_token_span(offsets, answer_start, answer_start + len(answer_text))
    if span is None or span[1] >= encoded["context_tokens"]:
        return None
    return span[0] + encoded["context_start"], span[1] + encoded["context_start"]


def span_text(context, offsets, start, end):
    """The context text a predicted `(start, end)` position span covers
    (`""` when either end is outside the context)."""
    start, end = int(start), int(end)
    if end < start or offsets[start][0] < 0 or offsets[end][0] < 0:
        return ""
    return context[offsets[start][0]:offsets[end][1]]


@dataclasses.dataclass
class QuestionAnsweringData:
    """What `squad_data` returns.

    Attributes:
        train: `tf.data.Dataset` of `((token_ids, segment_ids), (start,
            end))` batches, shuffled, last partial batch dropped.
        validation: like `train`, in order, every batch kept, only the
            examples whose answer fits in the window (for Keras' loss and
            position accuracy), or `None`.
        validation_examples: dict of NumPy arrays over ALL validation
            examples, for `keras_attention.models.evaluate_question_answering`:
            `token_ids`, `segment_ids`, `offsets`, and lists `contexts`,
            `answers` (lists of reference strings), `ids`.
        vocabulary: list of token strings (id -> token).
        sequence_length: int.
        question_length: int.
        train_examples: int, training examples kept.
        train_dropped: int, training examples dropped (answer cut off by
            the window, or matching no token).
    """

    train: object
    validation: object
    validation_examples: dict
    vocabulary: list
    sequence_length: int
    question_length: int
    train_examples: int
    train_dropped: int


def _encode_split(examples, vocabulary, sequence_length, question_length):
    index = {t: i for i, t in enumerate(vocabulary)}
    rows = collections.defaultdict(list)
    for example in examples:
        context = example["context"].decode("utf-8")
        encoded = encode_question_answering(
            example["question"].decode("utf-8"), context, index, sequence_length, question_length
        )
        texts = [t.decode("utf-8") for t in example["answers"]["text"]]
        starts = list(example["answers"]["answer_start"])
        span = None
        if texts and starts:
            span = answer_positions(encoded, context, texts[0], int(starts[0]))
        rows["token_ids"].append(encoded["token_ids"])
        rows["segment_ids"].append(encoded["segment_ids"])
        rows["offsets"].append(encoded["offsets"])
        rows["span"].append(span or (-1, -1))
        rows["contexts"].append(context)
        rows["answers"].append(texts)
        rows["ids"].append(example["id"].decode("utf-8") if "id" in example else str(len(rows["ids"])))
    arrays = {
        key: np.asarray(rows[key], "int32").reshape((-1, sequence_length) + ((2,) if key == "offsets" else ()))
        for key in ("token_ids", "segment_ids", "offsets")
    }
    arrays["span"] = np.asarray(rows["span"], "int32").reshape(-1, 2)
    arrays.update({key: rows[key] for key in ("contexts", "answers", "ids")})
    return arrays


def _dataset(arrays, batch_size, training, shuffle_buffer=0, seed=0):
    import tensorflow as tf

    keep = arrays["span"][:, 0] >= 0
    ds = tf.data.Dataset.from_tensor_slices(
        (
            (arrays["token_ids"][keep], arrays["segment_ids"][keep]),
            (arrays["span"][keep, 0], arrays["span"][keep, 1]),
        )
    ).cache()
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    return prefetched(ds.batch(batch_size, drop_remainder=training))


def squad_data(
    name="squad",
    data_dir=None,
    train_split="train",
    validation_split="validation",
    sequence_length=256,
    question_length=32,
    vocabulary_size=30000,
    batch_size=32,
    shuffle_buffer=20000,
    seed=0,
):
    """Loads a SQuAD-layout tfds dataset as packed question + context ids.

    The vocabulary is built on the training questions and contexts (see the
    module docstring for the tokenisation and its limits); training keeps
    the examples whose first answer lies inside the window.

    Args:
        name: tfds name with the `squad` features (`context`, `question`,
            `answers/text`, `answers/answer_start`), e.g. `"squad"` or
            `"squad/v1.1"`.
        data_dir: tfds data directory.
        train_split, validation_split: split names (`validation_split=None`
            to skip).
        sequence_length: int, the packed length.
        question_length: int, question tokens kept.
        vocabulary_size: int, vocabulary size (special tokens included).
        batch_size: int.
        shuffle_buffer: int, training shuffle buffer.
        seed: shuffle seed.

    Returns:
        A `QuestionAnsweringData`.

    Example:

    ```python
    data = squad_data(data_dir="shared/tfds", sequence_length=256)
    model = keras_attention.models.question_answering(
        len(data.vocabulary), data.sequence_length)
    keras_attention.models.compile_question_answering(model)
    model.fit(data.train, validation_data=data.validation, epochs=2)
    keras_attention.models.evaluate_question_answering(model, data)  # {"exact_match": ..., "f1": ...}
    ```
    """
    import tensorflow_datasets as tfds

    for argument, value in (
        ("sequence_length", sequence_length),
        ("question_length", question_length),
        ("vocabulary_size", vocabulary_size),
        ("batch_size", batch_size),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"`squad_data`: `{argument}` must be a positive int. "
                f"Received: {argument}={value!r}"
            )
    if sequence_length < question_length + 3:
        raise ValueError(
            "`squad_data`: `sequence_length` must leave room for the context "
            f"(at least question_length + 3 = {question_length + 3}). "
            f"Received: sequence_length={sequence_length}"
        )
    features = prepared_builder("`squad_data`", name, data_dir).info.features
    missing = [k for k in ("context", "question", "answers") if k not in features]
    if missing:
        raise ValueError(
            f"`squad_data`: {name!r} lacks the SQuAD features {missing}; "
            f"it has {sorted(features)}"
        )

    def load(split):
        return list(tfds.as_numpy(load_prepared("`squad_data`", name, split=split, data_dir=data_dir)))

    train_examples = load(train_split)
    contexts = {ex["context"] for ex in train_examples}
    vocabulary = build_vocabulary(
        [c.decode("utf-8") for c in contexts] + [ex["question"].decode("utf-8") for ex in train_examples],
        vocabulary_size,
    )
    train = _encode_split(train_examples, vocabulary, sequence_length, question_length)
    kept = int(np.sum(train["span"][:, 0] >= 0))
    validation = validation_examples = None
    if validation_split is not None:
        validation_examples = _encode_split(load(validation_split), vocabulary, sequence_length, question_length)
        validation = _dataset(validation_examples, batch_size, training=False)
    return QuestionAnsweringData(
        train=_dataset(train, batch_size, True, shuffle_buffer, seed),
        validation=validation,
        validation_examples=validation_examples,
        vocabulary=vocabulary,
        sequence_length=sequence_length,
        question_length=question_length,
        train_examples=kept,
        train_dropped=len(train_examples) - kept,
    )
