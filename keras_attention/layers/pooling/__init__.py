"""Pooling layers: attention pooling with learned queries and the masked average."""
