"""Runs groups of test processes (multi-worker clusters on 127.0.0.1)
under a hard deadline, and picks free ports for them."""

import os
import signal
import socket
import subprocess
import time

PROXY_VARIABLES = ("http_proxy", "https_proxy", "grpc_proxy", "HTTP_PROXY", "HTTPS_PROXY", "GRPC_PROXY", "all_proxy", "ALL_PROXY")


def free_ports(count):
    """`count` distinct free TCP ports on 127.0.0.1."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_processes(commands, out_dir, deadline):
    """Runs `{name: (argv, extra_env)}` together; returns failure texts.

    Every process writes `<out_dir>/<name>.log`. The first process that
    exits with an error, or the deadline, stops all others. Processes still
    running are killed in a `finally` block, whatever happens.
    """
    environment = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    environment.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    running, logs, failures = {}, {}, []
    try:
        for name, (argv, extra) in commands.items():
            logs[name] = open(os.path.join(out_dir, f"{name}.log"), "w")
            running[name] = subprocess.Popen(
                argv, stdout=logs[name], stderr=subprocess.STDOUT, env={**environment, **extra},
                start_new_session=True,
            )  # fmt: skip
        end = time.monotonic() + deadline
        pending = dict(running)
        while pending and not failures:
            for name, process in list(pending.items()):
                code = process.poll()
                if code is None:
                    continue
                del pending[name]
                if code != 0:
                    failures.append(f"{name} exited with {code}")
            if pending and time.monotonic() > end:
                failures.append(f"{sorted(pending)} still running after the {deadline} s deadline")
            time.sleep(0.5)
    finally:
        for process in running.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)  # its own session
            process.wait()
        for log in logs.values():
            log.close()
    if failures:
        for name in commands:
            with open(os.path.join(out_dir, f"{name}.log")) as f:
                failures.append(f"--- {name}.log (last lines):\n{f.read()[-2500:]}")
    return failures
