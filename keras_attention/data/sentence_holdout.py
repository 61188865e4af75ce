"""`hold_out_sentences`: a sentence-level hold-out for phrase-labelled corpora."""

import numpy as np


def _key(text):
    return " ".join(str(text).split())


def _spans(words):
    """Every contiguous run of `words`, joined by spaces (the whole included)."""
    n = len(words)
    return {" ".join(words[a:b]) for a in range(n) for b in range(a + 1, n + 1)}


def hold_out_sentences(texts, count, seed=0):
    """Splits a corpus of sentences and their labelled phrases by sentence.

    In corpora such as SST-2's training split, most examples are phrases
    cut from the corpus' own sentences, each with its own label. A random
    slice of such a split holds phrases whose sentences (and sibling
    phrases) are still in training, so it is far easier than new sentences
    and cannot rank recipes the way a real validation set does. This
    function finds the sentences (examples that are not a contiguous run
    of words of a longer example), holds out `count` of them at random,
    and drops from training every example that occurs only inside held-out
    sentences (a phrase that also occurs in a kept sentence stays). The
    hold-out then looks like unseen sentences, and nothing of them is
    trained on.

    Texts are compared as whitespace-separated words (so the corpus should
    be tokenised consistently, as SST is).

    Args:
        texts: sequence of str (or bytes decoded to str by the caller).
        count: int >= 1, sentences to hold out; at most the number of
            sentences found.
        seed: int, seed of the draw.

    Returns:
        `(train_indices, holdout_indices)`: sorted int64 NumPy arrays of
        positions in `texts`.

    Example:

    >>> texts = ["a good film", "good film", "a bad plot", "bad", "plot"]
    >>> train, holdout = hold_out_sentences(texts, 1, seed=0)
    >>> [texts[i] for i in holdout], [texts[i] for i in train]
    (['a bad plot'], ['a good film', 'good film'])
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"`hold_out_sentences`: `count` must be an int >= 1. Received: count={count!r}")
    keys = [_key(t) for t in texts]
    words = [k.split() for k in keys]
    covered = set()  # every run of words of a sentence found so far
    spans = {}  # sentence index -> its runs of words
    for i in sorted(range(len(keys)), key=lambda i: (-len(words[i]), i)):
        if keys[i] in covered:
            continue
        spans[i] = _spans(words[i])
        covered |= spans[i]
    sentences = list(spans)
    if count > len(sentences):
        raise ValueError(
            f"`hold_out_sentences`: `count` must be at most the {len(sentences)} sentences found. "
            f"Received: count={count}"
        )
    rng = np.random.default_rng(seed)
    held = set(rng.choice(np.array(sentences), size=count, replace=False).tolist())
    inside_held = set().union(*(spans[i] for i in held))
    inside_kept = set().union(*(spans[i] for i in sentences if i not in held))
    train = [i for i in range(len(keys)) if i not in held and (keys[i] in inside_kept or keys[i] not in inside_held)]
    return np.array(train, "int64"), np.array(sorted(held), "int64")
