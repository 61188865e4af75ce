"""Attention layers, position encodings and transformer blocks.

Every layer is re-exported here from the sub-package that holds it:
`attention`, `transformer`, `embeddings`, `pooling`, `preprocessing`
(augmentation), `regularization` and `activations`.
"""

from keras_attention.layers.attention.additive_attention import AdditiveAttention
from keras_attention.layers.attention.base import BaseAttention
from keras_attention.layers.attention.cbam import CBAM
from keras_attention.layers.attention.channel_attention import ChannelAttention
from keras_attention.layers.attention.distributed_attention import DistributedAttention
from keras_attention.layers.attention.dynamic_attention import DynamicAttention
from keras_attention.layers.attention.linear_attention import LinearAttention
from keras_attention.layers.attention.low_rank_attention import LowRankAttention
from keras_attention.layers.attention.multi_head_attention import MultiHeadAttention
from keras_attention.layers.attention.multimodal_attention import MultiModalAttention
from keras_attention.layers.attention.regional_attention import RegionalAttention
from keras_attention.layers.attention.registry import available
from keras_attention.layers.attention.registry import get
from keras_attention.layers.attention.registry import register_attention
from keras_attention.layers.attention.scaled_dot_product_attention import (
    ScaledDotProductAttention,
)
from keras_attention.layers.attention.sparse_attention import SparseAttention
from keras_attention.layers.attention.spatial_attention import SpatialAttention
from keras_attention.layers.attention.spatiotemporal_attention import SpatioTemporalAttention
from keras_attention.layers.attention.target_attention import TargetAttention

from keras_attention.layers.transformer.axial_transformer_encoder import AxialTransformerEncoder
from keras_attention.layers.transformer.feed_forward import FeedForward
from keras_attention.layers.transformer.transformer_decoder import TransformerDecoder
from keras_attention.layers.transformer.transformer_encoder import TransformerEncoder

from keras_attention.layers.embeddings.class_token import ClassToken
from keras_attention.layers.embeddings.learned_queries import LearnedQueries
from keras_attention.layers.embeddings.position_embedding import PositionEmbedding
from keras_attention.layers.embeddings.rotary_embedding import RotaryEmbedding
from keras_attention.layers.embeddings.sinusoidal_position_encoding import (
    SinusoidalPositionEncoding,
)
from keras_attention.layers.embeddings.token_and_position_embedding import (
    TokenAndPositionEmbedding,
)

from keras_attention.layers.pooling.attention_pooling import AttentionPooling
from keras_attention.layers.pooling.masked_average_pooling import MaskedAveragePooling

from keras_attention.layers.preprocessing.random_shift import RandomShift
from keras_attention.layers.preprocessing.frequency_warp import FrequencyWarp
from keras_attention.layers.preprocessing.short_time_fourier import (
    InverseShortTimeFourierTransform,
)
from keras_attention.layers.preprocessing.short_time_fourier import (
    ShortTimeFourierTransform,
)
from keras_attention.layers.preprocessing.spec_augment import SpecAugment
from keras_attention.layers.preprocessing.speed_perturbation import SpeedPerturbation

from keras_attention.layers.regularization.dropout import Dropout

from keras_attention.layers.activations.dice import Dice

__all__ = [
    "AdditiveAttention",
    "BaseAttention",
    "CBAM",
    "ChannelAttention",
    "DistributedAttention",
    "DynamicAttention",
    "LinearAttention",
    "LowRankAttention",
    "MultiHeadAttention",
    "MultiModalAttention",
    "RegionalAttention",
    "available",
    "get",
    "register_attention",
    "ScaledDotProductAttention",
    "SparseAttention",
    "SpatialAttention",
    "SpatioTemporalAttention",
    "TargetAttention",
    "AxialTransformerEncoder",
    "FeedForward",
    "TransformerDecoder",
    "TransformerEncoder",
    "ClassToken",
    "LearnedQueries",
    "PositionEmbedding",
    "RotaryEmbedding",
    "SinusoidalPositionEncoding",
    "TokenAndPositionEmbedding",
    "AttentionPooling",
    "MaskedAveragePooling",
    "RandomShift",
    "FrequencyWarp",
    "InverseShortTimeFourierTransform",
    "ShortTimeFourierTransform",
    "SpecAugment",
    "SpeedPerturbation",
    "Dropout",
    "Dice",
]
