"""Target attention of the Deep Interest Network (DIN)."""

import keras
from keras import ops

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_positive_int
from keras_attention.layers.activations.dice import Dice
from keras_attention.layers.attention.attention_masking import check_mask
from keras_attention.layers.attention.registry import register_attention
from keras_attention.ops.attention import attend_with_scores

ACTIVATIONS = ("sigmoid", "relu", "tanh", "dice")
NORMALIZE = ("softmax", None)


# Not swappable: it does not take `(query, value)` like the variants that
# blocks, builders, the command line and the tuner pick from `available()`;
# `get()` still builds it by name.
@register_attention("target", swappable=False)
class TargetAttention(keras.layers.Layer):
    """DIN target attention: a candidate item weighs a behaviour sequence.

    The "activation unit" of the Deep Interest Network scores every
    behaviour `k_t` of a user against the candidate item `q` with a small
    MLP over `[q, k_t, q - k_t, q * k_t]` (the element-wise product stands
    in for the paper's outer product, as in the authors' code):

        s_t = w_L^T act(... act(W_1 [q, k_t, q - k_t, q * k_t] + b_1) ...)
              + b_L

    and pools the behaviours into one interest vector:

    - `normalize=None` (DIN's original): `y = sum_t s_t k_t`, un-normalised,
      so the size of `y` can reflect how strongly the history matches;
    - `normalize="softmax"`: `y = sum_t softmax_t(s_t) k_t` (float32
      softmax through the shared core, `keras_attention.ops`).

    Padding behaviours (the Keras mask of `value`, e.g. from
    `Embedding(mask_zero=True)`, or `value_mask`) contribute nothing: their
    weight is zero in both modes. A user with no behaviour at all gets a
    zero vector (never NaN).

    Args:
        hidden_units: tuple of positive ints, sizes of the MLP's hidden
            layers. Defaults to `(80, 40)`, as in the paper.
        activation: `"sigmoid"` (default), `"relu"`, `"tanh"` or `"dice"`
            (`keras_attention.layers.Dice`, the paper's data-adaptive
            activation; its statistics skip the padding), the hidden
            layers' activation.
        normalize: `"softmax"` or `None` (default).
        kernel_initializer: initializer of the MLP kernels.
        bias_initializer: initializer of the MLP biases.
        kernel_regularizer: regularizer of the MLP kernels.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        query: the candidate item `(batch, d)`.
        value: the behaviour sequence `(batch, T, d)`.
        value_mask: optional boolean `(batch, T)`; defaults to the value's
            Keras mask.
        return_attention_scores: bool, also return the weights `(batch, T)`
            (the scores `s_t`, or their softmax, zero at padding).
        training: bool, whether Dice uses batch statistics.

    Returns:
        The user interest `(batch, d)`, and with
        `return_attention_scores=True` the tuple `(interest, weights)`.

    Example:

    >>> items = keras.layers.Embedding(100, 8, mask_zero=True)
    >>> candidate = items(keras.ops.convert_to_tensor([7, 42]))
    >>> history = items(keras.ops.convert_to_tensor([[3, 9, 0], [5, 0, 0]]))
    >>> interest = TargetAttention(hidden_units=(16, 8))(candidate, history)
    >>> tuple(interest.shape)
    (2, 8)

    Reference:
        - Zhou et al., 2018, "Deep Interest Network for Click-Through Rate
          Prediction", section 4.3 and figure 2.
    """

    def __init__(
        self,
        hidden_units=(80, 40),
        activation="sigmoid",
        normalize=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        cls = type(self)
        if isinstance(hidden_units, int) or not isinstance(
            hidden_units, (list, tuple)
        ):
            raise ValueError(
                f"{cls.__name__}: `hidden_units` must be a list or tuple of "
                f"positive ints. Received: hidden_units={hidden_units!r}"
            )
        for units in hidden_units:
            check_positive_int(cls, "hidden_units", units)
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"{cls.__name__}: `activation` must be one of {ACTIVATIONS}. "
                f"Received: activation={activation!r}"
            )
        if normalize not in NORMALIZE:
            raise ValueError(
                f"{cls.__name__}: `normalize` must be one of {NORMALIZE}. "
                f"Received: normalize={normalize!r}"
            )
        self.supports_masking = True
        self.hidden_units = tuple(hidden_units)
        self.activation = activation
        self.normalize = normalize
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def _check(self, query_shape, value_shape):
        query_shape, value_shape = tuple(query_shape), tuple(value_shape)
        if len(query_shape) != 2:
            raise argument_error(
                self,
                "query",
                "must have rank 2: (batch, features)",
                f"query.shape={query_shape}",
            )
        if len(value_shape) != 3:
            raise argument_error(
                self,
                "value",
                "must have rank 3: (batch, sequence, features)",
                f"value.shape={value_shape}",
            )
        if query_shape[-1] is None or query_shape[-1] != value_shape[-1]:
            raise argument_error(
                self,
                "value",
                "must have the query's known feature size "
                f"({query_shape[-1]}) as its last dimension",
                f"query.shape={query_shape}, value.shape={value_shape}",
            )

    def build(self, query_shape, value_shape):
        self._check(query_shape, value_shape)
        dim = query_shape[-1]
        self.mlp = []
        self.dice = []
        dice = self.activation == "dice"
        sizes = self.hidden_units + (1,)
        for i, units in enumerate(sizes):
            last = i == len(sizes) - 1
            dense = keras.layers.Dense(
                units,
                activation=None if last or dice else self.activation,
                kernel_initializer=self.kernel_initializer,
                bias_initializer=self.bias_initializer,
                kernel_regularizer=self.kernel_regularizer,
                dtype=self.dtype_policy,
                name="score" if last else f"hidden_{i}",
            )
            dense.build((None, None, 4 * dim if i == 0 else sizes[i - 1]))
            self.mlp.append(dense)
            if dice and not last:
                activation = Dice(dtype=self.dtype_policy, name=f"dice_{i}")
                activation.build((None, None, units))
                self.dice.append(activation)
        self.built = True

    def call(
        self,
        query,
        value,
        value_mask=None,
        return_attention_scores=False,
        training=None,
    ):
        self._check(query.shape, value.shape)
        if value_mask is not None:
            check_mask(self, "value_mask", value_mask, tuple(value.shape[:2]))
            value_mask = ops.cast(value_mask, "bool")
        q = query[:, None, :] + ops.zeros_like(value)
        x = ops.concatenate([q, value, q - value, q * value], axis=-1)
        for i, dense in enumerate(self.mlp):
            x = dense(x)
            if i < len(self.dice):
                x = self.dice[i](x, training=training, mask=value_mask)
        logits = x[..., 0]  # (batch, T)
        if self.normalize == "softmax":
            mask = None if value_mask is None else value_mask[:, None, None]
            out, weights = attend_with_scores(
                logits[:, None], value, mask=mask, return_scores=True
            )
            out, weights = out[:, 0], weights[:, 0]
        else:
            weights = logits
            if value_mask is not None:
                weights = ops.where(value_mask, weights, 0.0)
            out = ops.einsum("bt,btd->bd", weights, value)
        if return_attention_scores:
            return out, weights
        return out

    def compute_mask(self, inputs, previous_mask=None):
        return None

    def compute_output_shape(self, query_shape, value_shape):
        self._check(query_shape, value_shape)
        return tuple(query_shape)

    def compute_output_spec(
        self,
        query,
        value,
        value_mask=None,
        return_attention_scores=False,
        training=None,
    ):
        output = keras.KerasTensor(
            self.compute_output_shape(query.shape, value.shape),
            dtype=self.compute_dtype,
        )
        if return_attention_scores:
            weights = keras.KerasTensor(
                tuple(value.shape[:2]), dtype=self.compute_dtype
            )
            return output, weights
        return output

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_units": list(self.hidden_units),
                "activation": self.activation,
                "normalize": self.normalize,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self.bias_initializer
                ),
                "kernel_regularizer": keras.regularizers.serialize(
                    self.kernel_regularizer
                ),
            }
        )
        return config
