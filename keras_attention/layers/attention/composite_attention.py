"""What layers built from inner attention layers share."""

import keras

from keras_attention.arguments import check_positive_int
from keras_attention.arguments import check_rate
from keras_attention.layers.attention import registry


class CompositeAttention(keras.layers.Layer):
    """Base of layers made of inner attentions of a registered variant
    (`MultiModalAttention`, `SpatioTemporalAttention`).

    Holds and checks the arguments every inner attention gets, builds the
    inner layers (`inner()`), and writes the shared part of the config.
    Subclasses take a `mode` from their `MODES`.

    Args:
        num_heads: int, heads of each inner attention.
        key_dim: int, size of each head.
        mode: one of the subclass's `MODES`.
        value_dim: int, value head size. Defaults to `key_dim`.
        dropout: float in `[0, 1)`, attention dropout.
        use_bias: bool, projection biases.
        attention: registered (swappable) variant name of the inner
            attentions (see `keras_attention.layers.available()`).
        attention_kwargs: dict, extra arguments of the inner attentions.
        kernel_initializer: initializer of the kernels.
        bias_initializer: initializer of the biases.
        **kwargs: base `keras.layers.Layer` arguments.
    """

    MODES = ()

    def __init__(
        self,
        num_heads,
        key_dim,
        mode,
        value_dim=None,
        dropout=0.0,
        use_bias=True,
        attention="multi_head",
        attention_kwargs=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        cls = type(self)
        check_positive_int(cls, "num_heads", num_heads)
        check_positive_int(cls, "key_dim", key_dim)
        check_positive_int(cls, "value_dim", value_dim, allow_none=True)
        check_rate(cls, "dropout", dropout)
        if mode not in self.MODES:
            raise ValueError(
                f"{cls.__name__}: `mode` must be one of {self.MODES}. "
                f"Received: mode={mode!r}"
            )
        if not isinstance(attention, str) or registry.get_class(attention) is None:
            raise ValueError(
                f"{cls.__name__}: `attention` must be a registered attention "
                f"variant, one of {registry.available()}. Received: "
                f"attention={attention!r}"
            )
        if attention_kwargs is not None and not isinstance(attention_kwargs, dict):
            raise ValueError(
                f"{cls.__name__}: `attention_kwargs` must be a dict or None. "
                f"Received: attention_kwargs={attention_kwargs!r}"
            )
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.mode = mode
        self.value_dim = value_dim
        self.dropout = dropout
        self.use_bias = use_bias
        self.attention = attention
        self.attention_kwargs = dict(attention_kwargs or {})
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True

    def inner_defaults(self, name):
        """Arguments every inner layer named `name` gets where it takes them."""
        return {
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "value_dim": self.value_dim,
            "dropout": self.dropout,
            "use_bias": self.use_bias,
            "kernel_initializer": self._fresh(self.kernel_initializer),
            "bias_initializer": self._fresh(self.bias_initializer),
            "dtype": self.dtype_policy,
            "name": name,
        }

    @staticmethod
    def _fresh(initializer):
        return keras.initializers.get(keras.initializers.serialize(initializer))

    def inner(self, name, length, **defaults):
        """An inner attention layer (not built); `length` is its key length,
        `defaults` more arguments passed where the variant takes them."""
        return registry.create(
            self.attention,
            length,
            defaults={**self.inner_defaults(name), **defaults},
            **self.attention_kwargs,
        )

    def dense(self, name, units, input_dim):
        """A built `Dense` with this layer's initializers and dtype."""
        layer = keras.layers.Dense(
            units,
            use_bias=self.use_bias,
            kernel_initializer=self._fresh(self.kernel_initializer),
            bias_initializer=self._fresh(self.bias_initializer),
            dtype=self.dtype_policy,
            name=name,
        )
        layer.build((None, None, input_dim))
        return layer

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "mode": self.mode,
                "value_dim": self.value_dim,
                "dropout": self.dropout,
                "use_bias": self.use_bias,
                "attention": self.attention,
                "attention_kwargs": self.attention_kwargs or None,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
