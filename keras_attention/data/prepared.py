"""Opening prepared tensorflow-datasets, never downloading.

Every pipeline reads its tfds dataset through these two functions, so the
promise "nothing is downloaded" holds everywhere: a `data_dir` that does not
exist, a dataset tfds does not know, or a dataset that was never prepared
in `data_dir` is a `ValueError` that names the pipeline, the dataset and the
folder, raised before anything is created on disk.
"""

import os

_DEFAULT_DIR = "tfds' default folder (~/tensorflow_datasets or $TFDS_DATA_DIR)"


def _check_data_dir(where, data_dir):
    if data_dir is not None and not os.path.isdir(data_dir):
        raise ValueError(
            f"{where}: `data_dir` {data_dir!r} does not exist (nothing is "
            "downloaded: point it at a folder holding prepared tensorflow-datasets)"
        )


def prepared_builder(where, name, data_dir):
    """`tfds.builder(name, data_dir=data_dir)` with clear errors.

    Args:
        where: the pipeline's name, for messages.
        name: tfds name (`"mnist"`, `"glue/sst2"`).
        data_dir: tfds `data_dir` or `None` (tfds' default).
    """
    import tensorflow_datasets as tfds

    _check_data_dir(where, data_dir)
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as error:
        first = str(error).strip().splitlines()[0]
        raise ValueError(f"{where}: tensorflow-datasets has no dataset {name!r} ({first})") from None


def load_prepared(where, name, split, data_dir, **kwargs):
    """`tfds.load(..., download=False)` with clear errors.

    Args:
        where: the pipeline's name, for messages.
        name: tfds name.
        split: tfds split.
        data_dir: tfds `data_dir` or `None` (tfds' default).
        **kwargs: more `tfds.load` arguments (`shuffle_files`, ...).

    Raises:
        ValueError: the folder does not exist, or the dataset was not
            prepared in it.
    """
    import tensorflow_datasets as tfds

    _check_data_dir(where, data_dir)
    try:
        return tfds.load(name, split=split, data_dir=data_dir, download=False, **kwargs)
    except tfds.core.registered.DatasetNotFoundError as error:
        first = str(error).strip().splitlines()[0]
        raise ValueError(f"{where}: tensorflow-datasets has no dataset {name!r} ({first})") from None
    except AssertionError as error:
        if "could not find data" not in str(error):
            raise
        folder = data_dir if data_dir is not None else _DEFAULT_DIR
        raise ValueError(
            f"{where}: dataset {name!r} is not prepared in {folder}, and nothing "
            "is downloaded. Pass the folder that holds it (e.g. --data-dir "
            "../shared/tfds), or prepare it there first with tensorflow-datasets."
        ) from None


def cache_in_memory(ds):
    """`ds.cache()`, read through once so that the cache is complete.

    tf.data fills a cache while a first iterator reads the dataset to its
    end; an iterator dropped earlier (a training run of fewer `steps` than
    one pass, a `take`) throws the partial cache away with a warning, and
    the next pass starts over. Reading it through here, once, makes every
    later pass, however short, read from memory. The pass also counts the
    elements: a dataset whose size tf.data cannot tell (after `filter` or
    `unbatch`) gets it asserted, so Keras knows the steps of an epoch (and
    does not warn that the input "ran out of data" at its end).

    Args:
        ds: a finite `tf.data.Dataset` that fits in memory.

    Returns:
        The cached dataset (same elements), of known cardinality.
    """
    import tensorflow as tf

    ds = ds.cache()
    count = int(ds.reduce(tf.constant(0, tf.int64), lambda total, *_: total + 1))
    if int(ds.cardinality()) < 0:
        ds = ds.apply(tf.data.experimental.assert_cardinality(count))
    return ds
