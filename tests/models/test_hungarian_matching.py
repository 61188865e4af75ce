import doctest
import importlib
import itertools
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_attention.models.hungarian_matching import hungarian_matching

# The module, not the function a package export of the same name would give.
hungarian_module = importlib.import_module("keras_attention.models.hungarian_matching")

try:
    from scipy.optimize import linear_sum_assignment
except ImportError:  # pragma: no cover
    linear_sum_assignment = None


def _brute_force(cost, valid):
    """Optimal total over valid targets: try every injective assignment."""
    n, m = cost.shape
    targets = [j for j in range(m) if valid[j]]
    best = np.inf
    for predictions in itertools.permutations(range(n), len(targets)):
        best = min(best, sum(cost[i, j] for i, j in zip(predictions, targets)))
    return 0.0 if not targets else best


def _check_assignment(assignment, cost, valid):
    """Validity of one example's output; returns its total cost."""
    n, m = cost.shape
    assert assignment.shape == (m,)
    assert assignment.dtype == np.int32
    for j in range(m):
        if valid[j]:
            assert 0 <= assignment[j] < n
        else:
            assert assignment[j] == -1
    chosen = assignment[valid]
    assert len(set(chosen.tolist())) == len(chosen), assignment
    return float(sum(cost[assignment[j], j] for j in range(m) if valid[j]))


def _numpy_hungarian_total(cost):
    """Reference optimum for larger cases: SciPy's solver."""
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].sum())


@pytest.mark.parametrize("with_invalid", [False, True])
def test_matches_brute_force_on_random_small_cases(with_invalid):
    rng = np.random.default_rng(1 if with_invalid else 0)
    checked = 0
    for n in range(1, 7):
        for m in range(1, n + 1):
            batch = 6
            # Integer costs from a small range: many ties.
            cost = rng.integers(0, 4 if m % 2 else 10, size=(batch, n, m)).astype("float32")
            if with_invalid:
                valid = rng.random((batch, m)) < 0.6
            else:
                valid = np.ones((batch, m), dtype=bool)
            got = np.asarray(hungarian_matching(cost, valid if with_invalid else None))
            for b in range(batch):
                total = _check_assignment(got[b], cost[b], valid[b])
                assert total == _brute_force(cost[b], valid[b]), (cost[b], valid[b], got[b])
                checked += 1
    assert checked == 6 * 21


def test_real_valued_costs_match_brute_force():
    rng = np.random.default_rng(2)
    cost = rng.normal(size=(20, 6, 4)).astype("float32")
    got = np.asarray(hungarian_matching(cost))
    valid = np.ones(4, dtype=bool)
    for b in range(20):
        total = _check_assignment(got[b], cost[b], valid)
        np.testing.assert_allclose(total, _brute_force(cost[b].astype("float64"), valid), atol=1e-5)


def test_beats_greedy_matching():
    # Greedy (each target in turn takes its cheapest free prediction) gives
    # target 0 prediction 0 (cost 1), then target 1 prediction 1 (cost 100):
    # 101. The optimum is target 0 -> 1, target 1 -> 0: 2 + 2 = 4.
    cost = np.array([[[1.0, 2.0], [2.0, 100.0]]])
    assert np.asarray(hungarian_matching(cost)).tolist() == [[1, 0]]
    # A greedy pass on the globally cheapest entry also fails here: it takes
    # (0, 0) at cost 0 first and must pay 10 for target 1; optimum is 2.
    cost = np.array([[[0.0, 1.0], [1.0, 10.0], [9.0, 10.0]]])
    got = np.asarray(hungarian_matching(cost))
    assert got.tolist() == [[1, 0]]


def test_invalid_targets_never_take_a_needed_prediction():
    # Target 1 is padding whose (ignored) cost would make it grab
    # prediction 0, the only good one for target 0.
    cost = np.array([[[0.0, -50.0], [10.0, 0.0]]])
    got = np.asarray(hungarian_matching(cost, np.array([[True, False]])))
    assert got.tolist() == [[0, -1]]
    got = np.asarray(hungarian_matching(cost, np.array([[False, False]])))
    assert got.tolist() == [[-1, -1]]


def test_xla_compiled_batch_matches_reference_and_timing():
    rng = np.random.default_rng(3)
    batch, n, m = 4, 20, 8
    cost = rng.random((batch, n, m)).astype("float32")
    valid = np.ones((batch, m), dtype=bool)
    valid[1, 5:] = False
    valid[3, :] = False

    @tf.function(jit_compile=True)
    def match(cost, valid):
        return hungarian_matching(cost, valid)

    got = match(tf.constant(cost), tf.constant(valid)).numpy()
    start = time.perf_counter()
    repeats = 20
    for _ in range(repeats):
        match(tf.constant(cost), tf.constant(valid)).numpy()
    milliseconds = (time.perf_counter() - start) / repeats * 1e3
    print(f"XLA hungarian_matching (4, 20, 8): {milliseconds:.2f} ms per call")
    # More batches of the same shape through the compiled function (no
    # retrace): integer costs with ties and real-valued ones.
    cases = [(cost, valid, got)]
    for seed in range(8):
        more = rng.random((batch, n, m)).astype("float32")
        if seed % 2:
            more = np.floor(more * 5)
        more_valid = rng.random((batch, m)) < 0.8
        cases.append((more, more_valid, match(tf.constant(more), tf.constant(more_valid)).numpy()))
    for cost, valid, got in cases:
        eager = np.asarray(hungarian_matching(cost, valid))
        for b in range(batch):
            total = _check_assignment(got[b], cost[b], valid[b])
            np.testing.assert_allclose(total, _check_assignment(eager[b], cost[b], valid[b]), atol=1e-5)
            if linear_sum_assignment is None:
                continue
            columns = np.flatnonzero(valid[b])
            expected = _numpy_hungarian_total(cost[b][:, columns]) if len(columns) else 0.0
            np.testing.assert_allclose(total, expected, atol=1e-5)


def test_non_finite_costs_terminate_with_a_valid_assignment():
    cost = np.array(
        [
            [[np.nan, 1.0, np.inf], [np.inf, np.inf, np.inf], [2.0, -np.inf, np.nan], [np.nan] * 3],
            [[np.nan] * 3] * 4,
        ],
        dtype="float32",
    )
    valid = np.ones((2, 3), dtype=bool)
    for function in (hungarian_matching, tf.function(hungarian_matching, jit_compile=True)):
        got = np.asarray(function(tf.constant(cost)))
        for b in range(2):
            _check_assignment(got[b], np.nan_to_num(cost[b]), valid[b])
        # -inf is the best entry, then the finite ones.
        assert got[0, 1] == 2
    assert hungarian_module.LARGE_COST == 1e6


def test_gathered_cost_loss_has_finite_gradients_under_xla():
    rng = np.random.default_rng(4)
    predictions = tf.Variable(rng.normal(size=(3, 10, 2)).astype("float32"))
    targets = tf.constant(rng.normal(size=(3, 4, 2)).astype("float32"))
    valid = tf.constant(np.array([[True] * 4, [True, True, False, False], [True, False, True, True]]))

    @tf.function(jit_compile=True)
    def step():
        with tf.GradientTape() as tape:
            cost = keras.ops.sum(
                keras.ops.abs(predictions[:, :, None, :] - targets[:, None, :, :]), axis=-1
            )  # (3, 10, 4)
            index = hungarian_matching(cost, valid)
            safe = keras.ops.maximum(index, 0)
            matched = keras.ops.take_along_axis(cost, safe[:, None, :], axis=1)[:, 0, :]
            loss = keras.ops.sum(keras.ops.where(valid, matched, 0.0))
        return loss, tape.gradient(loss, predictions), index

    loss, gradient, index = step()
    gradient = gradient.numpy()
    assert np.isfinite(float(loss))
    assert np.all(np.isfinite(gradient))
    # Exactly the matched predictions receive a gradient.
    index = index.numpy()
    for b in range(3):
        used = set(index[b][index[b] >= 0].tolist())
        for i in range(10):
            assert bool(np.any(gradient[b, i] != 0)) == (i in used)


@pytest.mark.parametrize(
    "cost, valid, match",
    [
        (np.zeros((2, 3)), None, "`cost` must have rank 3.*cost.shape=\\(2, 3\\)"),
        (np.zeros((2, 2, 3)), None, "`cost` must have at least as many predictions.*N=2, M=3"),
        (np.zeros((2, 3, 2)), np.ones((2, 3), bool), "`valid` must have shape \\(batch, M\\).*valid.shape=\\(2, 3\\)"),
        (np.zeros((2, 3, 2)), np.ones((3, 2), bool), "`valid` must have shape.*valid.shape=\\(3, 2\\)"),
        (np.zeros((2, 3, 2)), np.ones((2,), bool), "`valid` must have shape.*valid.shape=\\(2,\\)"),
    ],
)
def test_bad_arguments_raise_clear_errors(cost, valid, match):
    with pytest.raises(ValueError, match="^`hungarian_matching`: " + match):
        hungarian_matching(cost, valid)


def test_no_targets_gives_an_empty_result():
    assert np.asarray(hungarian_matching(np.zeros((2, 3, 0)))).shape == (2, 0)


def test_doctest():
    results = doctest.testmod(hungarian_module, verbose=False)
    assert results.attempted > 0
    assert results.failed == 0
