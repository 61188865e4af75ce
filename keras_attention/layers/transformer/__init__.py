"""Transformer blocks: the encoder, the decoder, what they share and the feed-forward network."""
