"""Tasks by name: the data, the builder and the reading of inputs/outputs
that `keras-attention fit --task NAME` and the tuner share."""

from keras_attention.tasks.base import ClassificationTask
from keras_attention.tasks.base import ScheduledTask
from keras_attention.tasks.base import Task
from keras_attention.tasks.base import TaskData
from keras_attention.tasks.base import available_tasks
from keras_attention.tasks.base import get_task
from keras_attention.tasks.base import register_task
from keras_attention.tasks import listops as _listops  # noqa: F401  (registers the task)
from keras_attention.tasks import text as _text  # noqa: F401  (registers the task)
from keras_attention.tasks import image as _image  # noqa: F401  (registers the task)
from keras_attention.tasks import audio as _audio  # noqa: F401  (registers the task)
from keras_attention.tasks import enhance as _enhance  # noqa: F401  (registers the task)
from keras_attention.tasks import detect as _detect  # noqa: F401  (registers the task)
