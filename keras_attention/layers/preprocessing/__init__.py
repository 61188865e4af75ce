"""Preprocessing layers: XLA-friendly augmentation of images, spectrograms and waveforms, and the short-time Fourier transform pair."""
