"""Exact minimum-cost bipartite matching (Hungarian algorithm) in graph ops.

Runs inside `tf.function(jit_compile=True)`: every loop is a bounded
`keras.ops.while_loop` / `keras.ops.fori_loop`, every gather and scatter is
`take_along_axis` or one-hot arithmetic, and the whole batch is solved at
once (finished examples are masked, not branched on).
"""

import numpy as np
from keras import ops

from keras_attention.arguments import argument_error

# Non-finite costs are replaced by +/- this (NaN and +inf by +LARGE_COST, -inf
# by -LARGE_COST) and every cost is clipped to [-LARGE_COST, LARGE_COST], so
# the float32 potentials stay finite and the loops always end.
LARGE_COST = 1e6


def _check(cost, valid):
    shape = tuple(cost.shape)
    if len(shape) != 3:
        raise argument_error(
            "hungarian_matching",
            "cost",
            "must have rank 3, (batch, predictions N, targets M)",
            f"cost.shape={shape}",
        )
    n, m = shape[1], shape[2]
    if n is None or m is None:
        raise argument_error(
            "hungarian_matching",
            "cost",
            "must have static sizes N and M on axes 1 and 2",
            f"cost.shape={shape}",
        )
    if n < m:
        raise argument_error(
            "hungarian_matching",
            "cost",
            "must have at least as many predictions as targets (N >= M on axes 1, 2)",
            f"cost.shape={shape} (N={n}, M={m})",
        )
    if valid is not None:
        vshape = tuple(valid.shape)
        if len(vshape) != 2 or vshape[1] != m or (
            vshape[0] is not None and shape[0] is not None and vshape[0] != shape[0]
        ):
            raise argument_error(
                "hungarian_matching",
                "valid",
                f"must have shape (batch, M) = {(shape[0], m)}",
                f"valid.shape={vshape}",
            )
    return n, m


def hungarian_matching(cost, valid=None):
    """Minimum-cost assignment of targets to distinct predictions.

    For each example, finds the one-to-one assignment of the `M` targets
    to `M` of the `N >= M` predictions with the least total cost, exactly
    (the shortest-augmenting-path Hungarian algorithm with dual
    potentials, Kuhn-Munkres in the Jonker-Volgenant form: targets are
    added one at a time, each by a Dijkstra-like search over reduced
    costs; `O(M^2 N)` per example). The batch is solved at once with
    bounded loops, so it compiles under `jit_compile=True`. The output is
    an integer index and carries no gradient: gather the costs with it to
    build a loss (DETR).

    Costs are computed in float32. NaN and `+inf` become `LARGE_COST`
    (`1e6`), `-inf` becomes `-LARGE_COST`, and all costs are clipped to
    `[-LARGE_COST, LARGE_COST]`; the matching stays exact for costs well
    inside that range (integer costs are handled exactly while the totals
    stay below 2^24).

    Args:
        cost: float `(batch, N, M)`, `cost[b, i, j]` the cost of giving
            prediction `i` to target `j`; `N >= M`, both static.
        valid: optional bool `(batch, M)`, `False` for padded targets:
            they are left out of the matching (they never take a
            prediction) and get `-1`.

    Returns:
        int32 `(batch, M)`: for each target, the index of its prediction
        (`-1` for an invalid target); the predictions of valid targets are
        distinct and their total cost is minimal.

    Example:

    >>> import numpy as np
    >>> cost = np.array([[[1.0, 2.0], [0.0, 5.0], [4.0, 4.0]]])
    >>> np.asarray(hungarian_matching(cost)).tolist()
    [[1, 0]]
    >>> np.asarray(hungarian_matching(cost, valid=np.array([[True, False]]))).tolist()
    [[1, -1]]

    Reference:
        - Kuhn, 1955, "The Hungarian method for the assignment problem",
          Naval Research Logistics Quarterly 2.
        - Munkres, 1957, "Algorithms for the assignment and transportation
          problems", J. SIAM 5.
        - Jonker & Volgenant, 1987, "A shortest augmenting path algorithm
          for dense and sparse linear assignment problems", Computing 38.
        - [Carion et al., 2020, "End-to-end object detection with
          transformers" (DETR)](https://arxiv.org/abs/2005.12872), for the
          use as a set-prediction loss matcher.
    """
    cost = ops.convert_to_tensor(cost)
    if valid is not None:
        valid = ops.convert_to_tensor(valid)
    n, m = _check(cost, valid)
    cost = ops.stop_gradient(ops.cast(cost, "float32"))
    batch = ops.shape(cost)[0]
    if m == 0:
        return ops.zeros((batch, 0), dtype="int32")
    if valid is None:
        valid = ops.ones((batch, m), dtype="bool")
    valid = ops.cast(valid, "bool")

    cost = ops.where(ops.isnan(cost), LARGE_COST, cost)
    cost = ops.clip(cost, -LARGE_COST, LARGE_COST)
    # Rows = targets, columns = predictions, both 1-based: row 0 and
    # column 0 are the algorithm's dummies.
    a = ops.transpose(cost, (0, 2, 1))
    a = ops.where(valid[:, :, None], a, 0.0)
    a = ops.pad(a, ((0, 0), (1, 0), (1, 0)))  # (batch, M + 1, N + 1)

    inf = np.float32(np.inf)
    columns = ops.arange(n + 1, dtype="int32")[None, :]  # (1, N + 1)
    rows = ops.arange(m + 1, dtype="int32")[None, None, :]  # (1, 1, M + 1)

    def gather(x, index):  # x (batch, K), index (batch,) -> (batch,)
        return ops.take_along_axis(x, index[:, None], axis=1)[:, 0]

    def add_row(i, state):
        u, v, p, way = state
        i = ops.cast(i, "int32")
        active = ops.take(valid, i - 1, axis=1)
        # p[0] = i: the dummy column holds the new row.
        p = ops.where(ops.logical_and(columns == 0, active[:, None]), i, p)
        j0 = ops.zeros((batch,), dtype="int32")
        minv = ops.full((batch, n + 1), inf)
        used = ops.zeros((batch, n + 1), dtype="bool")

        # Dijkstra over reduced costs until a free column is reached. At
        # most i iterations (one new column per iteration, i - 1 of them
        # matched); bounded by N + 1 anyway.
        def search_cond(running, j0, u, v, minv, used, way):
            return ops.any(running)

        def search_body(running, j0, u, v, minv, used, way):
            go = running[:, None]
            used = ops.logical_or(used, ops.logical_and(columns == j0[:, None], go))
            i0 = gather(p, j0)
            row = ops.take_along_axis(a, i0[:, None, None], axis=1)[:, 0, :]
            cur = row - gather(u, i0)[:, None] - v
            free = ops.logical_and(ops.logical_not(used), columns > 0)
            better = ops.logical_and(ops.logical_and(free, cur < minv), go)
            minv = ops.where(better, cur, minv)
            way = ops.where(better, j0[:, None], way)
            masked = ops.where(free, minv, inf)
            j1 = ops.cast(ops.argmin(masked, axis=1), "int32")
            delta = ops.where(running, ops.min(masked, axis=1), 0.0)
            # u[p[j]] += delta and v[j] -= delta for used j; minv[j] -= delta
            # for the others.
            used_rows = ops.logical_and(ops.expand_dims(p, -1) == rows, used[:, :, None])
            u = u + delta[:, None] * ops.cast(ops.any(used_rows, axis=1), "float32")
            v = v - delta[:, None] * ops.cast(used, "float32")
            minv = ops.where(free, minv - delta[:, None], minv)
            j0 = ops.where(running, j1, j0)
            running = ops.logical_and(running, gather(p, j0) != 0)
            return running, j0, u, v, minv, used, way

        _, j0, u, v, _, _, way = ops.while_loop(
            search_cond,
            search_body,
            (active, j0, u, v, minv, used, way),
            maximum_iterations=n + 1,
        )

        # Augment along `way` back to the dummy column: at most i steps.
        def augment_cond(j0, p):
            return ops.any(j0 != 0)

        def augment_body(j0, p):
            moving = j0 != 0
            j1 = gather(way, j0)
            hit = ops.logical_and(columns == j0[:, None], moving[:, None])
            p = ops.where(hit, gather(p, j1)[:, None], p)
            return ops.where(moving, j1, j0), p

        j0 = ops.where(active, j0, 0)
        _, p = ops.while_loop(augment_cond, augment_body, (j0, p), maximum_iterations=n + 1)
        return u, v, p, way

    state = (
        ops.zeros((batch, m + 1), dtype="float32"),
        ops.zeros((batch, n + 1), dtype="float32"),
        ops.zeros((batch, n + 1), dtype="int32"),
        ops.zeros((batch, n + 1), dtype="int32"),
    )
    _, _, p, _ = ops.fori_loop(1, m + 1, add_row, state)

    # p[j] = 1-based target of prediction j - 1 (0: unmatched).
    hits = ops.expand_dims(p[:, 1:], -1) == ops.arange(1, m + 1, dtype="int32")[None, None, :]
    index = ops.sum(ops.cast(hits, "int32") * ops.arange(n, dtype="int32")[None, :, None], axis=1)
    matched = ops.logical_and(ops.any(hits, axis=1), valid)
    return ops.where(matched, index, -1)
