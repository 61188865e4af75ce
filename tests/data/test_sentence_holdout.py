"""`hold_out_sentences` on small hand-made phrase corpora."""

import numpy as np
import pytest

from keras_attention.data import hold_out_sentences

# Two sentences with their phrases; "the film" occurs in both.
TEXTS = [
    "the film is good",  # 0 sentence
    "the film",  # 1 in both sentences
    "is good",  # 2 only in sentence 0
    "good",  # 3 only in sentence 0
    "i hated the film",  # 4 sentence
    "hated",  # 5 only in sentence 4
    "hated the film",  # 6 only in sentence 4
    "the  film",  # 7 the same words as 1 (whitespace differs)
    "film is",  # 8 only in sentence 0
]


def _reference(texts, held):
    """Brute force: drop an example when every sentence that contains it as a run of words is held out."""
    sentences = [0, 4]

    def inside(text, sentence):
        a, b = text.split(), texts[sentence].split()
        return any(b[i:i + len(a)] == a for i in range(len(b) - len(a) + 1))

    keep = []
    for i, text in enumerate(texts):
        hosts = [s for s in sentences if inside(text, s)]
        if i not in held and not all(s in held for s in hosts):
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", range(6))
def test_matches_a_brute_force_split(seed):
    train, holdout = hold_out_sentences(TEXTS, 1, seed=seed)
    assert holdout.tolist() in ([0], [4])
    assert train.tolist() == _reference(TEXTS, set(holdout.tolist()))
    assert train.dtype == holdout.dtype == np.int64


def test_each_sentence_is_drawn_and_shared_phrases_stay():
    held = {tuple(hold_out_sentences(TEXTS, 1, seed=s)[1].tolist()) for s in range(20)}
    assert held == {(0,), (4,)}
    train, holdout = [t.tolist() for t in hold_out_sentences(TEXTS, 1, seed=next(
        s for s in range(20) if hold_out_sentences(TEXTS, 1, seed=s)[1].tolist() == [0]))]
    assert train == [1, 4, 5, 6, 7]  # "the film" stays: sentence 4 has it too
    train, holdout = hold_out_sentences(TEXTS, 2, seed=0)
    assert holdout.tolist() == [0, 4] and train.tolist() == []


def test_a_corpus_of_phrases_of_many_sentences():
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(30)]
    sentences = [" ".join(rng.choice(words, size=rng.integers(6, 12))) for _ in range(40)]
    texts = list(sentences)
    for s in sentences:
        w = s.split()
        for _ in range(5):
            a = rng.integers(0, len(w) - 1)
            texts.append(" ".join(w[a:rng.integers(a + 1, len(w))]))
    train, holdout = hold_out_sentences(texts, 10, seed=3)
    assert len(holdout) == 10 and set(holdout) <= set(range(40))
    held = [texts[i].split() for i in holdout]
    kept = [texts[i].split() for i in range(40) if i not in set(holdout)]

    def inside(a, b):
        return any(b[i:i + len(a)] == a for i in range(len(b) - len(a) + 1))

    for i, text in enumerate(texts):
        a = text.split()
        in_kept = any(inside(a, b) for b in kept)
        only_held = any(inside(a, b) for b in held) and not in_kept
        assert (i in set(train)) == (i not in set(holdout) and not only_held), text
    assert not set(train) & set(holdout)


@pytest.mark.parametrize("count,match", [(0, "int >= 1"), (True, "int >= 1"), (2.0, "int >= 1"), (3, "at most the 2 sentences")])
def test_errors(count, match):
    with pytest.raises(ValueError, match=rf"hold_out_sentences.*{match}.*count={count!r}"):
        hold_out_sentences(TEXTS, count)
