"""Regularization layers: dropout drawn with the Philox generator."""
