"""Attention maps as pictures.

- `attention_weights(model, inputs)`: every attention layer's weights in a
  functional model for one batch of inputs.
- `plot_attention(weights, tokens=None, ...)`: a grid of heatmaps, one per
  head (matplotlib, headless).
"""

import inspect

import keras
import numpy as np


def _accepts_scores(layer):
    try:
        parameters = inspect.signature(layer.call).parameters
    except (TypeError, ValueError):
        return False
    return "return_attention_scores" in parameters


def _single(inputs):
    return inputs[0] if len(inputs) == 1 else inputs


class _Scores(keras.layers.Layer):
    """Calls `layer` with `return_attention_scores=True`, returns the weights.

    A separate operation with one output: Keras functional graphs expect a
    layer to return the same structure at every call.
    """

    def __init__(self, layer, **kwargs):
        super().__init__(name=f"{layer.name}_scores", **kwargs)
        self.layer = layer
        self.supports_masking = True

    def compute_mask(self, *args, **kwargs):
        return None

    def call(self, *args, **kwargs):
        return self.layer(*args, return_attention_scores=True, **kwargs)[1]


def _probe_outputs(model, prefix):
    """Symbolic attention weights of every attention layer of `model`.

    Re-applies each layer that takes `return_attention_scores` to the
    tensors it was first called on, so the weights come from the model's own
    graph (masks included). Recurses into nested functional models.
    """
    outputs = {}
    for layer in model.layers:
        nodes = getattr(layer, "_inbound_nodes", [])
        if not nodes:
            continue
        arguments = nodes[0].arguments
        path = f"{prefix}{layer.name}"
        if isinstance(layer, keras.Model) and hasattr(layer, "_nodes_by_depth"):
            inner = _probe_outputs(layer, f"{path}/")
            if inner:
                probe = keras.Model(_single(layer.inputs), list(inner.values()))
                results = probe(*arguments.args, **arguments.kwargs)
                if not isinstance(results, (list, tuple)):
                    results = [results]
                outputs.update(zip(inner.keys(), results))
            continue
        if not _accepts_scores(layer):
            continue
        kwargs = dict(arguments.kwargs)
        kwargs.pop("return_attention_scores", None)
        weights = _Scores(layer)(*arguments.args, **kwargs)
        if keras.backend.is_keras_tensor(weights):
            outputs[path] = weights
    return outputs


def attention_weights(model, inputs):
    """Every attention layer's weights for one batch of `inputs`.

    Works on functional models (including nested ones, such as a
    preprocessing model wrapping a builder's model): each layer whose call
    takes `return_attention_scores` (the library's attention layers and
    transformer blocks, `keras.layers.MultiHeadAttention`) is applied again
    to the tensors it sees in the model, with the same masks.

    Args:
        model: a functional `keras.Model`.
        inputs: one batch, as `model(inputs)` takes it.

    Returns:
        A dict from the layer's path (`"encoder_0"`, `"inner/encoder_1"`) to
        a NumPy array, usually `(batch, heads, query_length, key_length)`.

    Example:

    ```python
    model = keras_attention.models.text_classifier(100, 2, 16, hidden_dim=16,
                                                   num_heads=2)
    maps = attention_weights(model, np.ones((1, 16), "int32"))
    figure = plot_attention(maps["encoder_0"][0])
    ```
    """
    if not hasattr(model, "_nodes_by_depth"):
        raise ValueError(
            "`attention_weights`: `model` must be a functional keras.Model. "
            f"Received: {type(model).__name__}"
        )
    symbolic = _probe_outputs(model, "")
    if not symbolic:
        return {}
    probe = keras.Model(_single(model.inputs), list(symbolic.values()))
    values = probe.predict_on_batch(inputs)
    if not isinstance(values, (list, tuple)):
        values = [values]
    return {
        name: np.asarray(value, dtype="float32")
        for name, value in zip(symbolic, values)
    }


def plot_attention(
    weights,
    tokens=None,
    key_tokens=None,
    heads=None,
    title=None,
    max_tokens=64,
    columns=4,
    cmap="viridis",
    path=None,
):
    """Heatmaps of attention weights, one panel per head.

    Args:
        weights: array `(heads, query_length, key_length)` or
            `(query_length, key_length)` (one example; index the batch
            first).
        tokens: optional labels of the query positions (strings).
        key_tokens: optional labels of the key positions. Defaults to
            `tokens` when the map is square.
        heads: optional list of head indices to draw. Defaults to all.
        title: optional figure title.
        max_tokens: int, draw at most this many leading positions per axis
            (long sequences are unreadable otherwise).
        columns: int, panels per row.
        cmap: matplotlib colormap name.
        path: optional file path; when given the figure is saved there
            (PNG by extension) and closed.

    Returns:
        The matplotlib `Figure` (closed if saved to `path`).

    Example:

    ```python
    weights = np.full((2, 3, 3), 1 / 3)
    figure = plot_attention(weights, tokens=["a", "b", "c"], title="layer 0")
    ```
    """
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    weights = np.asarray(weights, dtype="float32")
    if weights.ndim == 2:
        weights = weights[None]
    if weights.ndim != 3:
        raise ValueError(
            "`plot_attention`: `weights` must be (heads, query_length, "
            "key_length) or (query_length, key_length). Received: shape="
            f"{weights.shape}"
        )
    if heads is None:
        heads = list(range(weights.shape[0]))
    bad = [h for h in heads if not 0 <= h < weights.shape[0]]
    if bad:
        raise ValueError(
            f"`plot_attention`: `heads` must index the {weights.shape[0]} "
            f"heads. Received: heads={heads}"
        )
    if key_tokens is None and weights.shape[1] == weights.shape[2]:
        key_tokens = tokens
    q, k = min(weights.shape[1], max_tokens), min(weights.shape[2], max_tokens)
    columns = max(1, min(columns, len(heads)))
    rows = -(-len(heads) // columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(3.2 * columns, 3.2 * rows), squeeze=False
    )
    for panel, axis in enumerate(axes.flat):
        if panel >= len(heads):
            axis.axis("off")
            continue
        head = heads[panel]
        image = axis.imshow(
            weights[head, :q, :k], cmap=cmap, vmin=0.0, aspect="auto"
        )
        axis.set_title(f"head {head}", fontsize=9)
        for labels, setter, count in (
            (tokens, axis.set_yticks, q),
            (key_tokens, axis.set_xticks, k),
        ):
            if labels is not None and count <= 48:
                setter(range(count), [str(t) for t in list(labels)[:count]], fontsize=6)
        if key_tokens is not None and k <= 48:
            axis.tick_params(axis="x", labelrotation=90)
        figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=100)
        plt.close(figure)
    return figure
