"""Runs the test suite in batches of test files, each in a fresh `pytest`.

    python tests/run_suite.py [-n 2] [more pytest arguments]

TensorFlow keeps part of what every compiled function and model allocates
(its function library, XLA executables) for the life of the process,
whatever Keras' `clear_session` releases: about 50-120 MiB per model built,
trained and saved. One pytest-xdist worker running the whole suite grew to
5-10 GiB. Each batch below starts new worker processes, so a worker holds
at most one batch's share (3.5 GiB at most with these 6 batches, measured).
Every batch costs its start (TensorFlow imported, tests collected) and its
end (one worker idle while the other finishes): fewer batches, less time.

Arguments are passed to every `pytest` run (default `-n 2`). The exit
status is the worst of the batches'; a summary line per batch is printed at
the end.
"""

import glob
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# Directories whose test files are split into this many batches (the ones
# that build and compile many models); every other file goes in one batch.
SPLIT = {"layers": 1, "models": 2, "cli": 1}

# Files that lower or compile every builder run in a batch of their own.
OWN_BATCH = ("test_tpu_readiness.py",)


def batches():
    """Lists of test files (relative to the repository root)."""
    root = os.path.dirname(HERE)
    found = []
    rest = []
    for path in sorted(glob.glob(os.path.join(HERE, "**", "test_*.py"), recursive=True)):
        rel = os.path.relpath(path, root)
        folder = os.path.relpath(os.path.dirname(path), HERE)
        if folder in SPLIT:
            continue
        if os.path.basename(path) in OWN_BATCH:
            found.append([rel])
            continue
        rest.append(rel)
    for folder, parts in SPLIT.items():
        files = sorted(glob.glob(os.path.join(HERE, folder, "test_*.py")))
        files = [os.path.relpath(f, root) for f in files]
        for i in range(parts):
            chunk = files[i::parts]
            if chunk:
                found.append(chunk)
    return found + [rest]


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(a == "-n" or a.startswith("-n") or a.startswith("--numprocesses") for a in argv):
        argv = ["-n", "2"] + argv
    root = os.path.dirname(HERE)
    results = []
    for files in batches():
        start = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", "pytest", *argv, *files], cwd=root)
        results.append((files, code, time.perf_counter() - start))
        if code not in (0, 5):  # 5: nothing collected (e.g. all deselected)
            print(f"[run_suite] batch failed with exit code {code}: {' '.join(files)}", flush=True)
    print("\n[run_suite] batches:")
    for files, code, seconds in results:
        print(f"  exit {code}  {seconds:6.0f} s  {len(files)} file(s): {files[0]} ...")
    worst = max((code for _, code, _ in results if code != 5), default=0)
    print(f"[run_suite] {'all batches passed' if worst == 0 else f'FAILED (exit {worst})'}")
    return worst


if __name__ == "__main__":
    sys.exit(main())
