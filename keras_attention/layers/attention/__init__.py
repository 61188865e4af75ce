"""Attention layers: the shared shell, its masking, cache and registry, and every attention variant."""
