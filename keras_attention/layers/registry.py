"""Attention variants by name: `get("multi_head", num_heads=4, key_dim=32)`."""

import inspect

import keras

_VARIANTS = {}
# Registered layers with another call signature than `(query, value)`
# (pooling, target, multimodal, spatiotemporal attention): `get()` builds
# them by name, but blocks, builders, the command line and the tuner, which
# swap `(query, value)` variants, do not offer them.
_STRUCTURAL = {}

# What a variant needs from the sequence length when the caller did not say
# (given the arguments the caller did give).
_LENGTH_DEFAULTS = {
    "low_rank": lambda length, given: {
        "max_length": length,
        "rank": min(64, given.get("max_length", length)),
    },
    "regional": lambda length, given: (
        {"window_size": min(64, length)}
        if given.get("mode", "sliding") == "sliding"
        else {}
    ),
}


def register_attention(name, public=True, swappable=True):
    """Class decorator: Keras-serializable and reachable by `name`.

    Registers the class with `keras.saving.register_keras_serializable`
    (package `"keras_attention"`), so saved models load without
    `custom_objects` in a process that imported `keras_attention`, and,
    when `public`, under `name` for `get()`.

    Args:
        name: str, the variant's registry name (e.g. `"multi_head"`).
        public: bool, whether `get()` knows the name.
        swappable: bool, whether the layer takes the `(query, value)` call
            of `keras.layers.MultiHeadAttention`, so `available()` lists it
            and blocks/builders can use it.
    """

    def decorate(cls):
        cls = keras.saving.register_keras_serializable(
            package="keras_attention"
        )(cls)
        cls.registry_name = name
        if public:
            taken = _VARIANTS.get(name) or _STRUCTURAL.get(name)
            if taken is not None and taken is not cls:
                raise ValueError(
                    f"Attention variant name {name!r} is already taken by "
                    f"{taken.__name__}."
                )
            (_VARIANTS if swappable else _STRUCTURAL)[name] = cls
        return cls

    return decorate


def get_class(name):
    """The swappable attention class registered under `name`, or `None`."""
    return _VARIANTS.get(name)


def available(structural=False):
    """Sorted names of the registered attention variants.

    Args:
        structural: bool; also list the layers with another call signature
            (`"pooling"`, `"target"`, `"multimodal"`, `"spatiotemporal"`).
    """
    if structural:
        return sorted({**_VARIANTS, **_STRUCTURAL})
    return sorted(_VARIANTS)


def length_defaults(name, length, given=None):
    """Arguments variant `name` needs from the sequence length (`{}` if none).

    `"low_rank"` projects a fixed `max_length`; `"regional"` (sliding mode)
    needs a `window_size`. Builders and composite layers fill these in
    when the caller did not.

    Args:
        name: registered variant name.
        length: int or `None`, the key/value sequence length.
        given: dict of the arguments the caller gave (they win).
    """
    defaults = _LENGTH_DEFAULTS.get(name)
    if defaults is None or length is None:
        return {}
    given = given or {}
    return {k: v for k, v in defaults(length, given).items() if k not in given}


def accepts(cls, parameter):
    """Whether `cls(...)` accepts the keyword `parameter`.

    Follows `**kwargs` up the class hierarchy (a subclass that forwards
    `**kwargs` to `BaseAttention` accepts `key_dim`), stopping at
    `keras.layers.Layer`, whose `**kwargs` take only base arguments.
    """
    for klass in cls.__mro__:
        if klass in (keras.layers.Layer, object):
            return False
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters
        if parameter in params:
            return True
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return False
    return False


def create(name, length=None, defaults=None, **kwargs):
    """Builds swappable variant `name` for a composite layer.

    Args:
        name: registered (swappable) variant name.
        length: int or `None`, key/value length for `length_defaults`.
        defaults: dict of arguments passed only where the class accepts
            them (e.g. `num_heads`, `output_shape`, initializers).
        **kwargs: arguments always passed (the caller's own).

    Returns:
        The layer (not built).
    """
    cls = _VARIANTS[name]
    arguments = {**length_defaults(name, length, kwargs), **kwargs}
    for key, value in (defaults or {}).items():
        if key not in arguments and (
            key in ("dtype", "name") or accepts(cls, key)
        ):
            arguments[key] = value
    return cls(**arguments)


def get(identifier, **kwargs):
    """Returns an attention layer from a name, class, config or instance.

    Args:
        identifier: a registered name (see `available()`), an attention layer
            class, a config dict (`{"class_name": ..., "config": ...}` as
            produced by `keras.saving.serialize_keras_object`, or
            `{"variant": "<registered name>", **kwargs}`), or a layer instance (returned
            as is).
        **kwargs: constructor arguments (not allowed with an instance).

    Returns:
        A `keras.layers.Layer`.

    Example:

    >>> layer = get("multi_head", num_heads=2, key_dim=8)
    >>> type(layer).__name__
    'MultiHeadAttention'
    """
    if isinstance(identifier, keras.layers.Layer):
        if kwargs:
            raise ValueError(
                "`get`: keyword arguments cannot be applied to a layer "
                f"instance. Received: {type(identifier).__name__} instance and "
                f"kwargs={sorted(kwargs)}"
            )
        return identifier
    if isinstance(identifier, str):
        cls = _VARIANTS.get(identifier) or _STRUCTURAL.get(identifier)
        if cls is None:
            raise ValueError(
                f"`get`: unknown attention variant {identifier!r}. Expected "
                f"one of {available(structural=True)}."
            )
        return cls(**kwargs)
    if inspect.isclass(identifier) and issubclass(
        identifier, keras.layers.Layer
    ):
        return identifier(**kwargs)
    if isinstance(identifier, dict):
        if "class_name" in identifier:
            layer = keras.saving.deserialize_keras_object(identifier)
            if kwargs:
                config = layer.get_config()
                config.update(kwargs)
                layer = type(layer).from_config(config)
            return layer
        config = dict(identifier)
        name = config.pop("variant", None)
        if name is None:
            raise ValueError(
                "`get`: a config dict needs a 'class_name' (a serialized "
                "layer) or a 'variant' (a registered name). Received keys: "
                f"{sorted(identifier)}"
            )
        config.update(kwargs)
        return get(name, **config)
    raise ValueError(
        "`get`: expected a registered name, a layer class, a config dict or a "
        f"layer instance. Received: {identifier!r}"
    )

