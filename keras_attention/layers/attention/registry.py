"""Attention variants by name: `get("multi_head", num_heads=4, key_dim=32)`."""

import inspect

import keras

_VARIANTS = {}
# Registered layers with another call signature than `(query, value)`
# (pooling, target, multimodal, spatiotemporal attention): `get()` builds
# them by name, but blocks, builders, the command line and the tuner, which
# swap `(query, value)` variants, do not offer them.
_STRUCTURAL = {}


# Sequence-length-like values a hyperparameter search tries (those that fit).
SEARCH_LENGTHS = (8, 16, 32, 64)


class Tunable:
    """One argument an attention variant offers a hyperparameter search.

    A variant lists them in its class attribute `search_space`
    (`{argument: Tunable(...)}`), which the tuner reads
    (`keras_attention.tuning`); nothing here imports keras-tuner.

    Args:
        choices: a list of values, or `"length"`: the `SEARCH_LENGTHS` that
            fit the sequence (a window, a rank, a block, a top-k).
        default: a value, `"length"` (the largest fitting length, at most
            64), or a callable `default(length)`.
        when: optional `(argument, values)`: searched only when another of
            the variant's arguments takes one of `values` (e.g. sparse
            attention's `block_size` for its block patterns).
    """

    def __init__(self, choices, default, when=None):
        self.choices = choices
        self.default = default
        self.when = when

    @property
    def is_length(self):
        """Whether the values are lengths (valid only up to the sequence's)."""
        return self.choices == "length"

    def candidates(self, length):
        """The values to try for a sequence of `length` (`None`: unknown)."""
        if not self.is_length:
            return list(self.choices)
        values = [v for v in SEARCH_LENGTHS if length is None or v <= length]
        return values or [max(1, length)]

    def default_for(self, length):
        """The default for a sequence of `length`."""
        if self.default == "length":
            return min(64, length) if length else 64
        if callable(self.default):
            return self.default(length)
        return self.default


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

    Example:

    >>> from keras_attention.layers import BaseAttention
    >>> @register_attention("mean_value")
    ... class MeanValueAttention(BaseAttention):
    ...     # A sketch: every query gets the mean of the values (no masks).
    ...     def attend(self, query, key, value, mask=None, **kwargs):
    ...         mean = keras.ops.mean(value, axis=1, keepdims=True)
    ...         return keras.ops.repeat(mean, query.shape[1], axis=1), None
    >>> layer = get("mean_value", num_heads=2, key_dim=4)
    >>> x = keras.random.normal((2, 5, 8))
    >>> tuple(layer(x, x).shape)
    (2, 5, 8)
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

    Example:

    >>> available()[:3]
    ['additive', 'distributed', 'dynamic']
    >>> "pooling" in available(), "pooling" in available(structural=True)
    (False, True)
    """
    if structural:
        return sorted({**_VARIANTS, **_STRUCTURAL})
    return sorted(_VARIANTS)


def length_defaults(name, length, given=None):
    """Arguments variant `name` needs from the sequence length (`{}` if none).

    A variant states them itself, as a classmethod
    `length_defaults(length, given)` (e.g. `"low_rank"` projects a fixed
    `max_length`; `"regional"`, in sliding mode, needs a `window_size`).
    Builders and composite layers fill these in when the caller did not.

    Args:
        name: registered variant name.
        length: int or `None`, the key/value sequence length.
        given: dict of the arguments the caller gave (they win).
    """
    cls = _VARIANTS.get(name) or _STRUCTURAL.get(name)
    defaults = getattr(cls, "length_defaults", None)
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


class UnresolvedAttention(ValueError):
    """An `attention=` identifier that `resolve` cannot turn into a layer.

    Attributes:
        reason: `"instance_kwargs"` (keyword arguments for a layer
            instance), `"unknown_name"`, `"dict_keys"` (a dict with neither
            `class_name` nor `variant`), `"serialized"` (a serialized layer
            that does not deserialize) or `"type"` (anything else).
    """

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


class Resolved:
    """What an `attention=` identifier names, before any shape is known.

    Attributes:
        cls: the layer class to build, or `None` for an `instance`.
        instance: a ready layer (an instance, or a deserialized config), or
            `None`.
        kwargs: dict, the constructor arguments the identifier carries (with
            the caller's).
    """

    def __init__(self, cls=None, instance=None, kwargs=None):
        self.cls = cls
        self.instance = instance
        self.kwargs = dict(kwargs or {})


def class_from_name(name, structural=True):
    """The layer class for a registered variant name (structural ones too
    when `structural`) or a Keras-registered name (`"package>ClassName"`),
    or `None`."""
    cls = _VARIANTS.get(name) or (_STRUCTURAL.get(name) if structural else None)
    if cls is not None:
        return cls
    registered = keras.saving.get_registered_object(name)
    if inspect.isclass(registered) and issubclass(registered, keras.layers.Layer):
        return registered
    return None


def resolve(identifier, kwargs=None, structural=True):
    """The one resolver of `attention=` arguments (name, class, config or
    instance), used by `get`, `create` and the transformer blocks.

    Args:
        identifier: a registered name or Keras-registered class name, a layer
            class, `{"variant": name, **kwargs}`, a serialized layer
            (`{"class_name": ..., "config": ...}`) or a layer instance.
        kwargs: dict or `None`, constructor arguments (not allowed with an
            instance; applied to a serialized layer's config).
        structural: bool, whether names of layers with another call than
            `(query, value)` (`"pooling"`, `"target"`, ...) resolve.

    Returns:
        A `Resolved`.

    Raises:
        UnresolvedAttention: with a `reason` callers can word their own
            errors by.
    """
    given = dict(kwargs or {})
    if isinstance(identifier, keras.layers.Layer):
        if given:
            raise UnresolvedAttention(
                "instance_kwargs",
                "keyword arguments cannot be applied to a layer instance. "
                f"Received: {type(identifier).__name__} instance and "
                f"kwargs={sorted(given)}",
            )
        return Resolved(instance=identifier)
    if isinstance(identifier, str):
        cls = class_from_name(identifier, structural)
        if cls is None:
            raise UnresolvedAttention(
                "unknown_name",
                f"unknown attention variant {identifier!r}. Expected one of "
                f"{available(structural=True)}.",
            )
        return Resolved(cls=cls, kwargs=given)
    if inspect.isclass(identifier) and issubclass(identifier, keras.layers.Layer):
        return Resolved(cls=identifier, kwargs=given)
    if isinstance(identifier, dict) and "class_name" in identifier:
        try:
            layer = keras.saving.deserialize_keras_object(identifier)
        except Exception as error:  # Keras raises many types
            raise UnresolvedAttention("serialized", f"{type(error).__name__}: {error}") from error
        if given:
            config = layer.get_config()
            config.update(given)
            layer = type(layer).from_config(config)
        return Resolved(instance=layer)
    if isinstance(identifier, dict) and "variant" in identifier:
        config = dict(identifier)
        return resolve(config.pop("variant"), {**config, **given}, structural)
    if isinstance(identifier, dict):
        raise UnresolvedAttention(
            "dict_keys",
            "a config dict needs a 'class_name' (a serialized layer) or a "
            f"'variant' (a registered name). Received keys: {sorted(identifier)}",
        )
    raise UnresolvedAttention(
        "type",
        "expected a registered name, a layer class, a config dict or a layer "
        f"instance. Received: {identifier!r}",
    )


def build(resolved, length=None, defaults=None):
    """The layer a `Resolved` names (see `arguments` for what it gets)."""
    if resolved.instance is not None:
        return resolved.instance
    return resolved.cls(**arguments(resolved, length, defaults))


def arguments(resolved, length=None, defaults=None):
    """The constructor arguments of a resolved class.

    Args:
        resolved: a `Resolved` naming a class.
        length: int or `None`, the key/value length for `length_defaults`
            (registered variants only).
        defaults: dict of arguments passed only where the class accepts
            them and the identifier did not give them (`dtype` and `name`
            always).

    Returns:
        dict.
    """
    cls, result = resolved.cls, dict(resolved.kwargs)
    name = getattr(cls, "registry_name", None)
    if name is not None and (_VARIANTS.get(name) or _STRUCTURAL.get(name)) is cls:
        result = {**length_defaults(name, length, result), **result}
    for key, value in (defaults or {}).items():
        if key not in result and (key in ("dtype", "name") or accepts(cls, key)):
            result[key] = value
    return result


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
    return build(Resolved(cls=_VARIANTS[name], kwargs=kwargs), length, defaults)


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
    try:
        return build(resolve(identifier, kwargs))
    except UnresolvedAttention as error:
        raise ValueError(f"`get`: {error}") from None
