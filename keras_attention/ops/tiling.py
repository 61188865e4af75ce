"""Cutting an axis into blocks and back, with static or dynamic sizes.

Every tiled core pads a sequence axis to a whole number of blocks, splits
it into `(blocks, block)`, works on the blocks, then merges them and drops
the padding. Sizes may be Python ints (static) or scalar tensors (dynamic
lengths, e.g. a SavedModel signature with a `None` length); the helpers
keep ints as ints, so static shapes stay static.
"""

import numpy as np
from keras import ops

from keras_attention.ops.scores import static_or_dynamic


def is_static(size):
    """Whether `size` is a Python (or NumPy) int rather than a tensor."""
    return isinstance(size, (int, np.integer))


def ceil_div(a, b):
    """`ceil(a / b)` for ints or scalar int tensors (an int when both are)."""
    if is_static(a) and is_static(b):
        return -(-int(a) // int(b))
    return -ops.floor_divide(-a, b)


def pad_axis(x, axis, after, *, before=0):
    """Pads `axis` of `x` with zeros (`False` for a boolean tensor).

    What the padding holds never matters to the cores: padded keys are
    hidden by position, padded queries are dropped.

    Args:
        x: tensor.
        axis: int, the axis to pad.
        after: int or scalar int tensor, entries appended.
        before: int or scalar int tensor, entries prepended.

    Returns:
        The padded tensor (`x` itself when both amounts are the int 0).
    """
    if is_static(before) and is_static(after) and before == 0 and after == 0:
        return x
    widths = [(0, 0)] * len(x.shape)
    widths[axis] = (before, after)
    return ops.pad(x, widths)


def split_blocks(x, axis, blocks, block):
    """Pads `axis` to `blocks * block` and splits it into `(blocks, block)`.

    Args:
        x: tensor whose `axis` has at most `blocks * block` entries.
        axis: int, the axis to split.
        blocks: int or scalar int tensor, number of blocks.
        block: int, entries per block.

    Returns:
        `x` with `axis` replaced by the two axes `(blocks, block)`.
    """
    x = pad_axis(x, axis, blocks * block - static_or_dynamic(x, axis))
    dims = [static_or_dynamic(x, i) for i in range(len(x.shape))]
    return ops.reshape(x, dims[:axis] + [blocks, block] + dims[axis + 1 :])


def merge_blocks(x, axis, length):
    """Inverse of `split_blocks`: merges `axis` and `axis + 1`, then keeps
    the first `length` entries (drops the padding)."""
    dims = [static_or_dynamic(x, i) for i in range(len(x.shape))]
    merged = dims[axis] * dims[axis + 1]
    x = ops.reshape(x, dims[:axis] + [merged] + dims[axis + 2 :])
    if is_static(merged) and is_static(length) and merged == length:
        return x
    return x[(slice(None),) * axis + (slice(0, length),)]


def write(buffer, index, value):
    """`buffer[index] = value` for loop indices (in place under XLA).

    Args:
        buffer: tensor.
        index: list of scalar int tensors (or ints), the leading indices.
        value: tensor of shape `buffer.shape[len(index):]`.

    Returns:
        The updated buffer.
    """
    zero = ops.zeros((), "int32")
    starts = [ops.cast(i, "int32") for i in index]
    starts += [zero] * len(value.shape)
    for _ in index:
        value = ops.expand_dims(value, 0)
    return ops.slice_update(buffer, ops.stack(starts), value)
