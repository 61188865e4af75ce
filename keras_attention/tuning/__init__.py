"""Hyperparameter tuning with keras-tuner.

- `SearchSpace` (`search_space.py`): the valid hyperparameters of a task's
  model: the attention variant and its own arguments (conditional), depth,
  width, heads, key/value heads, dropout, learning rate and schedule; each
  fixed, a choice, or tuned over its defaults.
- `TaskHyperModel` / `hypermodel` (`hypermodel.py`): a
  `keras_tuner.HyperModel` building a task's model (`Task.build`, XLA).
- `tune` (`tune.py`): the resumable search on the task's `tf.data`
  pipelines; writes the best model (`.keras` + SavedModel) and a results
  table. On the command line: `keras-attention tune`.

Importing this package imports `keras_tuner`; `import keras_attention`
does not.
"""

from keras_attention.tuning.hypermodel import TaskHyperModel
from keras_attention.tuning.hypermodel import build_configuration
from keras_attention.tuning.hypermodel import hypermodel
from keras_attention.tuning.search_space import Configuration
from keras_attention.tuning.search_space import DEFAULT_VARIANTS
from keras_attention.tuning.search_space import SearchSpace
from keras_attention.tuning.tune import TUNERS
from keras_attention.tuning.tune import TuningResult
from keras_attention.tuning.tune import make_tuner
from keras_attention.tuning.tune import markdown_table
from keras_attention.tuning.tune import results_rows
from keras_attention.tuning.tune import tune

__all__ = [
    "Configuration",
    "DEFAULT_VARIANTS",
    "SearchSpace",
    "TUNERS",
    "TaskHyperModel",
    "TuningResult",
    "build_configuration",
    "hypermodel",
    "make_tuner",
    "markdown_table",
    "results_rows",
    "tune",
]
