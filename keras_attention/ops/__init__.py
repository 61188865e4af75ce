"""Backend-agnostic attention math, written with `keras.ops` only."""

from keras_attention.ops.attention import dot_product_attention
from keras_attention.ops.masks import causal_mask
from keras_attention.ops.masks import padding_mask
from keras_attention.ops.masks import prefix_lm_mask
from keras_attention.ops.masks import segment_mask
from keras_attention.ops.masks import sliding_window_mask
from keras_attention.ops.positions import alibi_bias
from keras_attention.ops.positions import alibi_slopes
from keras_attention.ops.positions import apply_rotary_embedding
from keras_attention.ops.positions import sinusoidal_positions
from keras_attention.ops.regional import region_mask
from keras_attention.ops.regional import regional_attention
from keras_attention.ops.sparse import block_sparse_attention
from keras_attention.ops.sparse import top_k_attention
from keras_attention.ops.sequence_parallel import merge_partials
from keras_attention.ops.sequence_parallel import partial_attention
from keras_attention.ops.sequence_parallel import sequence_parallel_attention
from keras_attention.ops.linear import apply_feature_map
from keras_attention.ops.linear import linear_attention
from keras_attention.ops.linear import orthogonal_random_features

__all__ = [
    "dot_product_attention",
    "causal_mask",
    "padding_mask",
    "prefix_lm_mask",
    "segment_mask",
    "sliding_window_mask",
    "alibi_bias",
    "alibi_slopes",
    "apply_rotary_embedding",
    "sinusoidal_positions",
    "region_mask",
    "regional_attention",
    "block_sparse_attention",
    "top_k_attention",
    "merge_partials",
    "partial_attention",
    "sequence_parallel_attention",
    "apply_feature_map",
    "linear_attention",
    "orthogonal_random_features",
]
