"""Copies of a Keras initializer for several weights of one layer."""


def clone_initializer(initializer, seed_offset=0):
    """A fresh copy of `initializer` for one more weight.

    An unseeded Keras initializer draws a new seed per copy. An integer seed
    is shifted by `seed_offset`, since an int-seeded Keras initializer repeats
    its values: weights that should differ must get different offsets.

    Args:
        initializer: a `keras.initializers.Initializer`.
        seed_offset: int added to an integer seed.

    Returns:
        A new initializer of the same class and configuration.

    Example:

    >>> import keras
    >>> base = keras.initializers.GlorotUniform(seed=1)
    >>> clone_initializer(base, seed_offset=2).get_config()["seed"]
    3
    """
    config = initializer.get_config()
    if isinstance(config.get("seed"), int) and seed_offset:
        config["seed"] += seed_offset
    return initializer.__class__.from_config(config)
