"""Embedding layers: token and position embeddings, rotary and sinusoidal encodings, the class token, learned object queries."""
