"""Preprocessing layers: XLA-friendly augmentation of images, spectrograms and waveforms."""
