"""Shared test setup: deterministic seeds, a clean dtype policy, hypothesis,
and Keras/TensorFlow state released between test modules."""

import ctypes
import gc
import os
import sys

import keras
import pytest

# Lets test modules `import helpers` (tests/helpers.py) under any import mode.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    from hypothesis import HealthCheck
    from hypothesis import settings
except ImportError:  # hypothesis is a test extra; its tests then skip.
    settings = None

if settings is not None:
    # Examples build small tensors and call TensorFlow eagerly: their first
    # call can be slow (kernel registration, tracing), so no deadline. No
    # example database either, so runs leave no files behind.
    settings.register_profile(
        "keras_attention",
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    # `HYPOTHESIS_PROFILE=thorough pytest ...` for a longer search.
    settings.register_profile(
        "thorough", parent=settings.get_profile("keras_attention"), max_examples=1000
    )
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "keras_attention"))


@pytest.fixture(autouse=True)
def _clean_keras_state():
    """Seeds every RNG and restores the float32 policy around each test."""
    keras.utils.set_random_seed(1234)
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")


def _return_freed_memory():
    """Hands freed heap pages back to the system (glibc), so a worker's
    resident memory follows what it holds rather than its peak."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@pytest.fixture(autouse=True, scope="module")
def _release_state_between_modules():
    """Each pytest-xdist worker runs many modules in one process: after each
    module, Keras' global state (models, layers, compiled XLA functions
    reachable only through it) is released and the memory handed back."""
    yield
    keras.backend.clear_session(free_memory=True)
    gc.collect()
    _return_freed_memory()


def pytest_sessionfinish(session):
    """With `KERAS_ATTENTION_TEST_MEMORY=<file>`, each process running tests
    (every pytest-xdist worker) appends its peak resident memory to the
    file: how the suite's memory per worker is measured."""
    path = os.environ.get("KERAS_ATTENTION_TEST_MEMORY")
    if not path:
        return
    import resource

    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open(path, "a") as f:
        f.write(f"{worker} {peak:.0f} MiB\n")


_PEAK = {"mib": 0.0}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """With `KERAS_ATTENTION_TEST_MEMORY=<file>`, a test that raises its
    worker's peak resident memory by more than 256 MiB is recorded there
    (which tests make a worker big)."""
    path = os.environ.get("KERAS_ATTENTION_TEST_MEMORY")
    if not path:
        yield
        return
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    yield
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if after - before > 256:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        with open(path, "a") as f:
            f.write(f"{worker} {item.nodeid} +{after - before:.0f} MiB (peak {after:.0f} MiB)\n")


# A builder's round trip (tests/models: `test_builds_trains_saves_exports`)
# builds, trains, saves and exports a model in a fresh process: 20-40 s per
# attention variant. The default run keeps each builder's first variant and
# marks the others slow (`-m slow` runs them); every variant keeps its own
# layer tests (fit, save, export) in the default run.
_FIRST_VARIANT_ONLY = "test_builds_trains_saves_exports"


def _mark_later_variants_slow(items):
    seen = set()
    for item in items:
        if getattr(item, "originalname", None) != _FIRST_VARIANT_ONLY or not hasattr(item, "callspec"):
            continue
        module = item.nodeid.split("::")[0]
        if module in seen:
            item.add_marker(pytest.mark.slow)
        seen.add(module)


# Modules whose tests share a fixture that takes long to set up (a search, a
# fitted run, the distributed runs): each runs on one pytest-xdist worker,
# so the fixture is set up once, not once per worker, and no worker waits
# for the other's (see `pytest_xdist_make_scheduler`).
_ONE_WORKER_MODULES = (
    "tests/tuning/test_tune.py",
    "tests/cli/test_cli_jobs.py",
    "tests/cli/test_cli_run_safety.py",
    "tests/distribute/test_strategies.py",
)

# Seconds each test took (setup + call + teardown), measured: see
# `pytest_runtest_logreport` below.
_DURATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "durations.txt")


def _module_costs():
    """Seconds per test module, from `durations.txt` (empty if absent)."""
    costs = {}
    if os.path.exists(_DURATIONS):
        with open(_DURATIONS, encoding="utf-8") as f:
            for line in f:
                seconds, _, nodeid = line.strip().partition(" ")
                if nodeid:
                    module = nodeid.split("::")[0]
                    costs[module] = costs.get(module, 0.0) + float(seconds)
    return costs


def pytest_runtest_logreport(report):
    """With `KERAS_ATTENTION_TEST_DURATIONS=<file>`, appends each phase's
    seconds and test id to the file: `tests/durations.txt` is made this way
    (`KERAS_ATTENTION_TEST_DURATIONS=tests/durations.txt python
    tests/run_suite.py` after removing it)."""
    path = os.environ.get("KERAS_ATTENTION_TEST_DURATIONS")
    # Written by the process that sees every report once (pytest-xdist's
    # controller, or pytest alone).
    if path and report.duration >= 0.05 and "PYTEST_XDIST_WORKER" not in os.environ:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{report.duration:.2f} {report.nodeid}\n")


# Before pytest groups the tests by fixture (which keeps the modules' order).
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Marks later builder variants slow and runs the costliest modules
    first (their tests in file order), since a long test started last would
    leave the other worker idle at the end of a batch."""
    _mark_later_variants_slow(items)
    costs = _module_costs()
    # Stable: modules without a measurement keep their order, last.
    items.sort(key=lambda item: -costs.get(item.nodeid.split("::")[0], 0.0))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`-n N` (pytest-xdist's `load` distribution) sends each test to the
    next free worker, except the tests of `_ONE_WORKER_MODULES`: each of
    those modules goes whole to one worker, first."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):
        # Scopes with more tests are sent first, then single tests in the
        # order of collection (`pytest_collection_modifyitems`).
        def _split_scope(self, nodeid):
            module = nodeid.split("::")[0]
            return module if module in _ONE_WORKER_MODULES else nodeid

    return Scheduling(config, log)
