"""Argument checks shared by ops, layers, models and pipelines.

Every error says who raised it, which argument, what was expected and what
was received: `"<source>: `<argument>` <expected>. Received: <received>"`.
The source is named from what the caller passes:

- a layer (or any object with a `name`): `Layer 'name' (ClassName)`;
- a class: its name (`MultiHeadAttention`);
- a str: a function or builder name in snake case is shown as code
  (`` `text_classifier` ``); any other text as given (`ListOps`,
  `` `squad_data` ``).
"""

import math
import numbers


def source_name(source):
    """How an error names the code that raised it (see the module)."""
    if isinstance(source, str):
        if source.isidentifier() and source == source.lower():
            return f"`{source}`"
        return source
    if isinstance(source, type):
        return source.__name__
    name = getattr(source, "name", None)
    return f"Layer '{name}' ({type(source).__name__})"


def argument_error(source, argument, expected, received):
    """The `ValueError` for a bad argument (see the module).

    Args:
        source: the layer, class or function name raising it.
        argument: the argument's name.
        expected: what it must be, as a phrase (`"must be a positive
            integer"`).
        received: what was given, usually `f"{argument}={value!r}"`.

    Returns:
        A `ValueError` (to raise).
    """
    return ValueError(f"{source_name(source)}: `{argument}` {expected}. Received: {received}")


def is_int(value):
    """Whether `value` is an integer (a NumPy one too), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(source, argument, value, minimum=None, allow_none=False):
    """Raises unless `value` is an integer `>= minimum` (or `None` if
    allowed); returns it."""
    if value is None and allow_none:
        return value
    if not is_int(value) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        raise argument_error(
            source,
            argument,
            f"must be an integer{bound}{' or None' if allow_none else ''}",
            f"{argument}={value!r}",
        )
    return value


def check_positive_int(source, argument, value, allow_none=False):
    """Raises unless `value` is an integer >= 1 (or `None` if allowed);
    returns it."""
    if value is None and allow_none:
        return value
    if not is_int(value) or value < 1:
        raise argument_error(
            source,
            argument,
            f"must be a positive integer{' or None' if allow_none else ''}",
            f"{argument}={value!r}",
        )
    return value


def check_rate(source, argument, value):
    """Raises unless `value` is a number in `[0, 1)`; returns it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise argument_error(source, argument, "must be a float in [0, 1)", f"{argument}={value!r}")
    return value


def check_choice(source, argument, value, choices):
    """Raises unless `value` is one of `choices`; returns it."""
    if value not in choices:
        raise argument_error(source, argument, f"must be one of {list(choices)}", f"{argument}={value!r}")
    return value


def check_heads(source, hidden_dim, num_heads):
    """Raises unless `num_heads` divides `hidden_dim` (both positive)."""
    check_positive_int(source, "hidden_dim", hidden_dim)
    check_positive_int(source, "num_heads", num_heads)
    if hidden_dim % num_heads:
        raise argument_error(
            source, "num_heads", f"must divide hidden_dim={hidden_dim}", f"num_heads={num_heads}"
        )


def check_image_size(source, image_size):
    """`image_size` as a `(height, width)` tuple of positive ints (an int
    means a square), or the `ValueError` naming `source`."""
    if is_int(image_size):
        image_size = (image_size, image_size)
    if not isinstance(image_size, (tuple, list)) or len(image_size) != 2 or not all(
        is_int(d) and d > 0 for d in image_size
    ):
        raise argument_error(
            source, "image_size", "must be a positive int or (height, width)", f"image_size={image_size!r}"
        )
    return tuple(int(d) for d in image_size)


def is_number(value):
    """Whether `value` is a real number (a NumPy one too), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int_or_scalar(source, argument, value, minimum=None):
    """Raises unless `value` is an integer `>= minimum` or a scalar tensor.

    A tensor's value may only be known at run time (while tracing), so only
    its rank is checked.
    """
    bound = "" if minimum is None else f" >= {minimum}"
    if is_int(value):
        if minimum is not None and value < minimum:
            raise argument_error(source, argument, f"must be an integer{bound}", f"{argument}={value}")
        return value
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        if len(value.shape) > 0:
            raise argument_error(
                source,
                argument,
                f"must be a scalar, got a tensor of shape {tuple(value.shape)}",
                f"{argument}={value}",
            )
        return value
    raise argument_error(
        source,
        argument,
        f"must be an integer or scalar tensor{bound}",
        f"{argument}={value!r} (of type {type(value).__name__})",
    )


def check_positive_float(source, argument, value):
    """Raises unless `value` is a positive finite number; returns it."""
    if not is_number(value) or not value > 0 or not math.isfinite(value):
        raise argument_error(source, argument, "must be a positive finite number", f"{argument}={value!r}")
    return value


def check_float_dtype(source, argument, dtype):
    """Raises unless `dtype` names a floating point dtype; returns it
    standardized (`"float32"`, `"float16"`, `"bfloat16"`, ...)."""
    import keras

    try:
        standard = keras.backend.standardize_dtype(dtype)
    except (ValueError, TypeError, AttributeError):
        standard = None
    if standard is None or "float" not in standard:
        raise argument_error(
            source,
            argument,
            "must be a floating point dtype such as 'float32', 'float16' or 'bfloat16'",
            f"{argument}={dtype!r}",
        )
    return standard
