"""Runs the `keras-attention` console script in a subprocess."""

import os
import shutil
import subprocess
import sys


def script():
    """The installed console script, or `python -m keras_attention.cli`."""
    beside = os.path.join(os.path.dirname(sys.executable), "keras-attention")
    if os.path.exists(beside):
        return [beside]
    found = shutil.which("keras-attention")
    return [found] if found else [sys.executable, "-m", "keras_attention.cli"]


def run_cli(*arguments, cwd=None, timeout=600, env=None, **kwargs):
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    for key, value in (env or {}).items():  # None removes a variable
        environment.pop(key, None)
        if value is not None:
            environment[key] = value
    return subprocess.run(
        script() + [str(a) for a in arguments],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env=environment,
        **kwargs,
    )
