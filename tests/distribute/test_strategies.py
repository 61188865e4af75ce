"""Builders train under tf.distribute strategies as on one device.

Each set-up runs `strategy_runs.py` in fresh processes started together:
one device (the reference), `MirroredStrategy` over two logical CPU
devices, and `MultiWorkerMirroredStrategy` with two worker processes on
127.0.0.1 (`TF_CONFIG`, free ports). All train the same cases on the same
global batches from the same initial weights; the tests compare the
per-step losses and the final weights.

The default run trains two cases (`text_classifier`, and
`sequential_recommender`, whose regression loss needs
`ElementwiseMeanSquaredError` to be right on two replicas); every builder
runs under `-m slow`. The processes of a set-up run once per test session
(shared between pytest-xdist workers through a lock file), under a hard
deadline: the first process that fails stops the others (a multi-worker
cluster whose peer died would otherwise wait for it forever), and every
process still running when the tests stop is killed.

Tolerance: the replicas compute the same sums in another order (two half
batches, then an all-reduce), which changes float32 results by about 1e-7
relative per operation; over six Adam steps the losses agree to ~1e-6
(measured). Weights whose true gradient is zero (a key projection's bias:
softmax ignores it) move only by Adam normalising float32 noise, by up to
~1e-5 a step, in a different direction on each run; hence the weights'
absolute tolerance of 1e-4, against real updates of about the learning
rate, 1e-3, a step. The bounds below (rtol 2e-4 on losses)
leave room for that and are far tighter than what a real difference makes:
a loss scaled by the number of replicas (Keras' `MeanSquaredError` on
`(batch,)` targets), gradients clipped per replica, or a replica training
on the wrong half all move the losses by percents, and
`test_tolerance_is_far_below_a_training_step` checks that one step of
training changes the loss by more than the tolerance.
"""

import fcntl
import json
import os
import sys
import time

import numpy as np
import pytest

from builder_cases import CASES
from processes import free_ports
from processes import run_processes

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "strategy_runs.py")
LEAN_CASES = ("text_classifier", "sequential_recommender")
# Hard deadlines for a whole set-up (all processes together), in seconds:
# the lean set-up takes about a minute on 2 cores, all cases a few minutes.
LEAN_DEADLINE = 300
FULL_DEADLINE = 900
LOSS_RTOL, LOSS_ATOL = 2e-4, 2e-5
WEIGHT_RTOL, WEIGHT_ATOL = 1e-3, 1e-4
def strategy_commands(out_dir, cases):
    """The four processes of a set-up: reference, mirrored, two workers."""
    selected = ",".join(cases)
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    commands = {
        "reference": ([sys.executable, SCRIPT, "reference", os.path.join(out_dir, "reference.npz"), selected], {}),
        "mirrored": ([sys.executable, SCRIPT, "mirrored", os.path.join(out_dir, "mirrored.npz"), selected], {}),
    }
    for index in range(2):
        config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        commands[f"worker{index}"] = (
            [sys.executable, SCRIPT, "multiworker", os.path.join(out_dir, f"worker{index}.npz"), selected],
            {"TF_CONFIG": config},
        )
    return commands


def shared_runs(tmp_path_factory, label, cases, deadline):
    # Under pytest-xdist the base temp's parent is this session's folder,
    # shared by its workers; without xdist the base temp itself is.
    base = tmp_path_factory.getbasetemp()
    session = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    shared = session / f"strategy_runs_{label}"
    shared.mkdir(exist_ok=True)
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        status = shared / "status.json"
        if not status.exists():
            failures = run_processes(strategy_commands(str(shared), cases), str(shared), deadline)
            status.write_text(json.dumps(failures))
        failures = json.loads(status.read_text())
    if failures:
        pytest.fail("\n\n".join(failures))
    return {name: dict(np.load(shared / f"{name}.npz")) for name in ("reference", "mirrored", "worker0", "worker1")}


@pytest.fixture(scope="session")
def lean_runs(tmp_path_factory):
    return shared_runs(tmp_path_factory, "lean", LEAN_CASES, LEAN_DEADLINE)


@pytest.fixture(scope="session")
def all_runs(tmp_path_factory):
    return shared_runs(tmp_path_factory, "all", sorted(set(CASES) - set(LEAN_CASES)), FULL_DEADLINE)


def _weights(run, case, when):
    count = sum(1 for key in run if key.startswith(f"{case}/{when}/"))
    return [run[f"{case}/{when}/{i}"] for i in range(count)]


def assert_same_training(reference, other, case):
    start, other_start = _weights(reference, case, "initial"), _weights(other, case, "initial")
    assert len(start) == len(other_start) > 0
    for a, b in zip(start, other_start):
        np.testing.assert_array_equal(a, b, err_msg=f"{case}: different initial weights")
    losses, other_losses = reference[f"{case}/loss"], other[f"{case}/loss"]
    assert losses.shape == other_losses.shape == (6,)
    assert np.all(np.isfinite(losses))
    # The weights move: a run that did not train would not match by chance.
    assert not np.allclose(losses[0], losses[3], rtol=LOSS_RTOL, atol=LOSS_ATOL)
    np.testing.assert_allclose(other_losses, losses, rtol=LOSS_RTOL, atol=LOSS_ATOL, err_msg=f"{case}: per-step losses")
    for i, (a, b) in enumerate(zip(_weights(reference, case, "final"), _weights(other, case, "final"))):
        np.testing.assert_allclose(b, a, rtol=WEIGHT_RTOL, atol=WEIGHT_ATOL, err_msg=f"{case}: final weight {i}")


def _check_mirrored(runs, case):
    assert int(runs["mirrored"]["replicas"]) == 2
    assert int(runs["reference"]["replicas"]) == 1
    assert_same_training(runs["reference"], runs["mirrored"], case)


def _check_multi_worker(runs, case):
    assert int(runs["worker0"]["replicas"]) == int(runs["worker1"]["replicas"]) == 2
    assert_same_training(runs["reference"], runs["worker0"], case)
    # Both workers end with the same (synchronised) weights.
    for a, b in zip(_weights(runs["worker0"], case, "final"), _weights(runs["worker1"], case, "final")):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("case", LEAN_CASES)
def test_mirrored_strategy_matches_single_device(lean_runs, case):
    _check_mirrored(lean_runs, case)


@pytest.mark.parametrize("case", LEAN_CASES)
def test_multi_worker_strategy_matches_single_device(lean_runs, case):
    _check_multi_worker(lean_runs, case)


def test_tolerance_is_far_below_a_training_step(lean_runs):
    # The same loss one step later (same batch, one epoch on) is outside
    # the tolerance: a run one step off, or not training, fails the test.
    for case in LEAN_CASES:
        losses = lean_runs["reference"][f"{case}/loss"]
        later = losses[3:]
        assert not np.allclose(later, losses[:3], rtol=LOSS_RTOL, atol=LOSS_ATOL), case


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(set(CASES) - set(LEAN_CASES)))
def test_every_builder_under_mirrored_strategy(all_runs, case):
    _check_mirrored(all_runs, case)


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(set(CASES) - set(LEAN_CASES)))
def test_every_builder_under_multi_worker_strategy(all_runs, case):
    _check_multi_worker(all_runs, case)


def test_a_failing_process_stops_the_others_at_once(tmp_path):
    # A hang must fail fast: a worker that waits forever is killed when
    # its peer fails, long before the deadline.
    commands = {
        "fails": ([sys.executable, "-c", "import sys; sys.exit(3)"], {}),
        "hangs": ([sys.executable, "-c", "import time; time.sleep(600)"], {}),
    }
    start = time.monotonic()
    failures = run_processes(commands, str(tmp_path), deadline=120)
    assert time.monotonic() - start < 30
    assert failures[0] == "fails exited with 3"


def test_the_deadline_kills_a_hanging_process(tmp_path):
    commands = {"hangs": ([sys.executable, "-c", "import time; time.sleep(600)"], {})}
    start = time.monotonic()
    failures = run_processes(commands, str(tmp_path), deadline=2)
    assert time.monotonic() - start < 30
    assert failures[0] == "['hangs'] still running after the 2 s deadline"
