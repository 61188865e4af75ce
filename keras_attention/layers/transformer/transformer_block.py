"""What `TransformerEncoder` and `TransformerDecoder` share.

- `AttentionSpec`: turns an `attention=` argument (registered name, class,
  config dict or layer instance, plus `attention_kwargs`) into a layer once
  the hidden size is known, and back into a config entry.
- `TransformerBlock`: the argument checks, the sub-layers every block has
  (feed-forward network, layer norms, residual dropouts), the residual
  wiring (post-norm, pre-norm or parallel) and the mask plumbing.
"""

import functools
import inspect

import keras
from keras import ops
from keras.src.backend.common.masking import get_keras_mask
from keras.src.backend.common.masking import set_keras_mask

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_positive_int
from keras_attention.arguments import check_rate
from keras_attention.layers.attention import registry
from keras_attention.layers.attention.attention_masking import check_mask
from keras_attention.layers.attention.registry import accepts
from keras_attention.layers.regularization.dropout import Dropout
from keras_attention.layers.transformer.feed_forward import FeedForward
from keras_attention.layers.initializers import clone_initializer
from keras_attention.layers.transformer.feed_forward import get_activation

_PRIMITIVES = (type(None), bool, int, float, str)




@functools.lru_cache(maxsize=None)
def _parameters_of(call):
    return frozenset(inspect.signature(call).parameters)


def call_parameters(layer):
    """The parameter names of `layer.call`, inspected once per class."""
    return _parameters_of(type(layer).call)


def serialize_kwargs(kwargs):
    """`kwargs` for a config: Keras objects serialized, primitives as they are."""
    if kwargs is None:
        return None
    return {
        key: value
        if isinstance(value, _PRIMITIVES + (list, tuple))
        else keras.saving.serialize_keras_object(value)
        for key, value in kwargs.items()
    }


def deserialize_kwargs(kwargs):
    """Inverse of `serialize_kwargs` (serialized Keras objects -> objects)."""
    if not kwargs:
        return kwargs
    return {
        key: keras.saving.deserialize_keras_object(value)
        if isinstance(value, dict) and "class_name" in value
        else value
        for key, value in kwargs.items()
    }


class AttentionSpec:
    """An `attention=` argument, resolved as far as possible without shapes.

    The accepted identifiers, with the constructor arguments they receive:

    - a registered name (`"multi_head"`, see
      `keras_attention.layers.available()`) or a Keras-registered class name
      (`"package>ClassName"`), a layer class, or `{"variant": name, **kw}`:
      the class is built in the block's `build()` with `attention_kwargs`
      (and `kw`), plus defaults it accepts and does not get:
      `num_heads=<block num_heads>`, `key_dim=hidden_dim // num_heads`, the
      block's kernel/bias initializers, dtype policy and a name;
    - a layer instance, or a serialized layer
      (`{"class_name": ..., "config": ...}`, as
      `keras.saving.serialize_keras_object` writes it): used as is (a
      serialized layer gets `attention_kwargs` applied to its config); no
      defaults are added.

    Args:
        layer: the block (for error messages).
        argument: the argument's name (`"attention"`, `"cross_attention"`).
        identifier: the identifier.
        kwargs: dict or `None`, the constructor arguments.
        kwargs_argument: the name of the kwargs argument.
    """

    def __init__(self, layer, argument, identifier, kwargs, kwargs_argument):
        if kwargs is not None and not isinstance(kwargs, dict):
            raise argument_error(
                layer,
                kwargs_argument,
                "must be a dict or None",
                f"{kwargs_argument}={kwargs!r}",
            )
        self.argument = argument
        self.identifier = identifier
        self.kwargs = None if kwargs is None else dict(kwargs)
        self.cls = None
        self.instance = None
        self.class_kwargs = {}
        try:
            # Names of structural layers (pooling, target, ...) are not
            # offered: they take another call than (query, value).
            resolved = registry.resolve(identifier, kwargs, structural=False)
        except registry.UnresolvedAttention as error:
            raise self._unresolved(layer, argument, identifier, kwargs, kwargs_argument, error) from None
        self.cls, self.instance, self.class_kwargs = resolved.cls, resolved.instance, resolved.kwargs

    @staticmethod
    def _unresolved(layer, argument, identifier, kwargs, kwargs_argument, error):
        """The block's own wording of a `registry.UnresolvedAttention`."""
        if error.reason == "instance_kwargs":
            return argument_error(
                layer,
                kwargs_argument,
                f"cannot be combined with a layer instance as "
                f"`{argument}` (configure the instance instead)",
                f"{argument}={type(identifier).__name__} instance, "
                f"{kwargs_argument}={kwargs!r}",
            )
        if error.reason == "unknown_name":
            name = identifier["variant"] if isinstance(identifier, dict) else identifier
            return argument_error(
                layer,
                argument,
                f"must be a registered attention variant (one of "
                f"{registry.available()}), a Keras-registered layer class name "
                "('package>ClassName'), a layer class, a config dict or a layer "
                "instance",
                f"{argument}={name!r}",
            )
        if error.reason == "serialized":
            return argument_error(
                layer,
                argument,
                "must be a valid serialized layer when it is a dict "
                f"with a 'class_name' ({error})",
                f"{argument}={identifier!r}",
            )
        return argument_error(
            layer,
            argument,
            "must be a registered attention name, a layer class, a "
            "config dict (with a 'class_name' or a 'variant' key) or a "
            "layer instance",
            f"{argument}={identifier!r}",
        )

    @property
    def is_instance(self):
        return self.instance is not None

    def template(self, name):
        """A serialized, unbuilt copy of the instance named `name`."""
        config = keras.saving.serialize_keras_object(self.instance)
        config.pop("build_config", None)
        config.pop("compile_config", None)
        config["config"] = dict(config["config"], name=name)
        return config

    def create(self, block, hidden_dim, name, seed_offset=0):
        """The attention layer for a block whose features have `hidden_dim`.

        `seed_offset` shifts an integer seed of the block's kernel
        initializer, so two attention layers don't start out equal.
        """
        if self.instance is not None:
            return self.instance
        cls = self.cls
        defaults = {"num_heads": block.num_heads}
        if accepts(cls, "key_dim") and "key_dim" not in self.class_kwargs:
            heads = self.class_kwargs.get("num_heads", block.num_heads)
            if hidden_dim % heads:
                raise argument_error(
                    block,
                    "num_heads",
                    f"must divide the hidden size ({hidden_dim}) to derive "
                    f"the `key_dim` of `{self.argument}` (or pass `key_dim` "
                    f"in `{self.argument}_kwargs`)",
                    f"num_heads={heads}, hidden size={hidden_dim}",
                )
            defaults["key_dim"] = hidden_dim // heads
        for key, value, offset in (
            ("kernel_initializer", block.kernel_initializer, seed_offset),
            ("bias_initializer", block.bias_initializer, 0),
        ):
            if accepts(cls, key) and key not in self.class_kwargs:
                defaults[key] = clone_initializer(value, offset)
        defaults.update(dtype=block.dtype_policy, name=name)
        kwargs = registry.arguments(registry.Resolved(cls=cls, kwargs=self.class_kwargs), defaults=defaults)
        try:
            return cls(**kwargs)
        except TypeError as error:
            raise argument_error(
                block,
                self.argument,
                f"could not be constructed: {cls.__name__}("
                f"{', '.join(sorted(kwargs))}) raised TypeError: {error}",
                f"{self.argument}={self.identifier!r}",
            ) from error

    def to_config(self, block, created):
        """`(identifier, kwargs)` for the `get_config()` of `block`."""
        if self.instance is not None:
            return keras.saving.serialize_keras_object(self.instance), None
        kwargs = serialize_kwargs(self.kwargs)
        if isinstance(self.identifier, str):
            return self.identifier, kwargs
        if isinstance(self.identifier, dict):  # {"variant": name, **kwargs}
            return serialize_kwargs(self.identifier), kwargs
        # A class: by name when the name leads back to it.
        cls = self.identifier
        name = getattr(cls, "registry_name", None)
        if name is not None and registry.get_class(name) is cls:
            return name, kwargs
        name = keras.saving.get_registered_name(cls)
        if keras.saving.get_registered_object(name) is cls:
            return name, kwargs
        if created is not None:
            # E.g. `keras.layers.MultiHeadAttention`: the created layer's own
            # serialization (which Keras resolves) carries every argument.
            return keras.saving.serialize_keras_object(created), None
        raise argument_error(
            block,
            self.argument,
            "can only be serialized once its layer exists (after `build()`) "
            "when it is a class that is neither a registered attention "
            "variant nor registered with "
            "`keras.saving.register_keras_serializable`; register the class, "
            "or pass a name, config dict or instance",
            f"{self.argument}={cls.__name__}",
        )


class TransformerBlock(keras.layers.Layer):
    """Base of `TransformerEncoder` and `TransformerDecoder` (not public).

    Holds the checked arguments, the feed-forward network, the layer norms
    and residual dropouts, and runs a list of sub-layers with the residual
    wiring chosen by `norm_first` and `parallel`.
    """

    def __init__(
        self,
        intermediate_dim,
        num_heads,
        attention="multi_head",
        attention_kwargs=None,
        dropout=0.0,
        activation="relu",
        layer_norm_epsilon=1e-5,
        norm_first=False,
        parallel=False,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive_int(self, "intermediate_dim", intermediate_dim)
        check_positive_int(self, "num_heads", num_heads)
        check_rate(self, "dropout", dropout)
        if (
            isinstance(layer_norm_epsilon, bool)
            or not isinstance(layer_norm_epsilon, (int, float))
            or not layer_norm_epsilon > 0
        ):
            raise argument_error(
                self,
                "layer_norm_epsilon",
                "must be a positive float",
                f"layer_norm_epsilon={layer_norm_epsilon!r}",
            )
        for argument, value in (("norm_first", norm_first), ("parallel", parallel)):
            if not isinstance(value, bool):
                raise argument_error(
                    self, argument, "must be a bool", f"{argument}={value!r}"
                )
        self.activation = get_activation(self, activation)
        self.intermediate_dim = intermediate_dim
        self.num_heads = num_heads
        self.dropout = float(dropout)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.norm_first = norm_first
        self.parallel = parallel
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True
        self.attention_spec = AttentionSpec(
            self, "attention", attention, attention_kwargs, "attention_kwargs"
        )
        self.self_attention_layer = self.attention_spec.instance

        self.feed_forward_layer = FeedForward(
            intermediate_dim,
            activation=self.activation,
            dropout=self.dropout,
            # Attention layers take seed offsets 0-3 (self) and 4-7 (cross).
            kernel_initializer=clone_initializer(self.kernel_initializer, 8),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name="feed_forward",
        )
        self.self_attention_dropout = self._dropout("self_attention_dropout")
        self.feed_forward_dropout = self._dropout("feed_forward_dropout")
        if parallel:
            # One LayerNorm feeds every sub-layer of a parallel block.
            self.norm = self._layer_norm("norm")
            self.self_attention_norm = None
            self.feed_forward_norm = None
        else:
            self.norm = None
            self.self_attention_norm = self._layer_norm("self_attention_norm")
            self.feed_forward_norm = self._layer_norm("feed_forward_norm")

    # ------------------------------------------------------------------
    # helpers for subclasses
    # ------------------------------------------------------------------
    def _dropout(self, name):
        return Dropout(
            self.dropout, dtype=self.dtype_policy, name=name
        )

    def _layer_norm(self, name):
        return keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name=name
        )

    def _check_sequence(self, argument, shape):
        shape = tuple(shape)
        if len(shape) != 3:
            raise argument_error(
                self,
                argument,
                "must have rank 3: (batch, sequence, features)",
                f"{argument}.shape={shape}",
            )
        if shape[-1] is None:
            raise argument_error(
                self,
                argument,
                "must have a known last (feature) dimension",
                f"{argument}.shape={shape}",
            )
        return shape

    def _build_attention(
        self, spec, name, query_shape, value_shape, seed_offset=0
    ):
        layer = spec.create(self, query_shape[-1], name, seed_offset)
        if not layer.built:
            layer.build(query_shape, value_shape)
        return layer

    def _build_common(self, shape):
        self.feed_forward_layer.build(shape)
        for norm in (self.norm, self.self_attention_norm, self.feed_forward_norm):
            if norm is not None:
                norm.build(shape)

    def _padding(self, argument, sequence, explicit):
        """Keras mask of `sequence` AND `explicit`, boolean `(batch, T)`."""
        masks = []
        keras_mask = get_keras_mask(sequence)
        if keras_mask is not None:
            masks.append(keras_mask)
        if explicit is not None:
            explicit = ops.convert_to_tensor(explicit)
            check_mask(self, argument, explicit, tuple(sequence.shape[:2]))
            masks.append(explicit)
        merged = None
        for m in masks:
            m = ops.cast(m, "bool")
            merged = m if merged is None else ops.logical_and(merged, m)
        return merged

    def _attend(
        self,
        layer,
        query,
        value,
        query_mask,
        value_mask,
        attention_mask,
        use_causal_mask,
        return_attention_scores,
        training,
    ):
        """Calls an attention layer; returns `(output, scores or None)`.

        Padding reaches the layer as `query_mask`/`value_mask` when its call
        takes them (no `(batch, Tq, Tv)` mask is materialised), otherwise
        folded into `attention_mask`.
        """
        params = call_parameters(layer)
        kwargs = {}
        if "query_mask" in params and "value_mask" in params:
            kwargs["query_mask"] = query_mask
            kwargs["value_mask"] = value_mask
        elif value_mask is not None:
            keys = value_mask[:, None, :]
            if attention_mask is None:
                rows = ops.ones((1, ops.shape(query)[1], 1), "bool")
                attention_mask = ops.logical_and(rows, keys)
            else:
                attention_mask = ops.logical_and(
                    ops.cast(attention_mask, "bool"), keys
                )
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask
        if use_causal_mask:
            kwargs["use_causal_mask"] = True
        if return_attention_scores:
            kwargs["return_attention_scores"] = True
        if "training" in params:
            kwargs["training"] = training
        result = layer(query, value, **kwargs)
        if return_attention_scores:
            return result
        return result, None

    def _residual(self, x, sublayers, training):
        """Applies `(norm, fn, dropout)` sub-layers with residuals.

        Post-norm: `x = norm(x + dropout(fn(x)))` per sub-layer. Pre-norm:
        `x = x + dropout(fn(norm(x)))`. Parallel: one shared norm,
        `x + sum(dropout(fn(norm(x))))`.
        """
        if self.parallel:
            normed = self.norm(x)
            total = x
            for _, fn, dropout in sublayers:
                total = total + dropout(fn(normed), training=training)
            return total
        for norm, fn, dropout in sublayers:
            if self.norm_first:
                x = x + dropout(fn(norm(x)), training=training)
            else:
                x = norm(x + dropout(fn(x), training=training))
        return x

    @staticmethod
    def _restore_masks(tensors_and_masks):
        # Attention layers remove the Keras masks of their inputs (they
        # handle them); put back those of the caller's tensors so that other
        # consumers of the same tensors still see them.
        for tensor, mask in tensors_and_masks:
            if mask is not None:
                set_keras_mask(tensor, mask)

    def _check_causal_support(self, layer, sequence):
        """Lets the attention layer refuse a causal mask in a symbolic call.

        Keras runs `compute_output_spec`, not `call`, on symbolic inputs, so
        a variant that cannot be causal (e.g. low-rank) would otherwise
        only fail when the model first runs. Needs a built block.
        """
        spec = keras.KerasTensor(sequence.shape, dtype=self.compute_dtype)
        layer.compute_output_spec(spec, spec, use_causal_mask=True)

    def _scores_spec(self, layer, query, value):
        query = keras.KerasTensor(query.shape, dtype=self.compute_dtype)
        value = keras.KerasTensor(value.shape, dtype=self.compute_dtype)
        _, scores = layer.compute_output_spec(
            query, value, return_attention_scores=True
        )
        return scores

    # ------------------------------------------------------------------
    # config
    # ------------------------------------------------------------------
    def get_config(self):
        config = super().get_config()
        attention, attention_kwargs = self.attention_spec.to_config(
            self, self.self_attention_layer
        )
        config.update(
            {
                "intermediate_dim": self.intermediate_dim,
                "num_heads": self.num_heads,
                "attention": attention,
                "attention_kwargs": attention_kwargs,
                "dropout": self.dropout,
                "activation": keras.activations.serialize(self.activation),
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "norm_first": self.norm_first,
                "parallel": self.parallel,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self.bias_initializer
                ),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("attention_kwargs", "cross_attention_kwargs"):
            if config.get(key):
                config[key] = deserialize_kwargs(config[key])
        for key in ("attention", "cross_attention"):
            value = config.get(key)
            if isinstance(value, dict) and "variant" in value:
                config[key] = deserialize_kwargs(value)
        return super().from_config(config)
