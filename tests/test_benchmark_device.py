"""benchmarks/device.py, and the tables of benchmarks/attention.py and
benchmarks/variants.py for each device, without running a benchmark: the
GPU branches run against a stand-in for TensorFlow's GPU calls."""

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import types

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, "benchmarks")
MIB = 1024**2


def _load(name):
    if BENCHMARKS not in sys.path:
        sys.path.insert(0, BENCHMARKS)  # the scripts import `device` and `attention`
    spec = importlib.util.spec_from_file_location(
        f"benchmark_{name}", os.path.join(BENCHMARKS, f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


device = _load("device")

GPU_INFO = {
    "kind": "gpu",
    "name": "NVIDIA H100 80GB HBM3",
    "gpus": 1,
    "compute_capability": "9.0",
    "tf32": True,
}
CPU_INFO = {"kind": "cpu", "name": "Some CPU", "gpus": 0}


class FakeTF:
    """The TensorFlow calls benchmarks/device.py makes, on a made-up GPU."""

    def __init__(self, gpus=1, current=300 * MIB, peak=1324 * MIB):
        self.calls = []
        self.current, self.peak = current, peak
        gpu = types.SimpleNamespace(name="/physical_device:GPU:0", device_type="GPU")
        experimental = types.SimpleNamespace(
            get_device_details=self._details,
            tensor_float_32_execution_enabled=lambda: True,
            reset_memory_stats=self._reset,
            get_memory_info=self._memory_info,
        )
        self.config = types.SimpleNamespace(
            list_physical_devices=lambda kind: [gpu] * gpus if kind == "GPU" else [],
            experimental=experimental,
        )

    def _details(self, physical_device):
        self.calls.append(("details", physical_device.name))
        return {"device_name": "NVIDIA H100 80GB HBM3", "compute_capability": (9, 0)}

    def _reset(self, name):
        self.calls.append(("reset", name))

    def _memory_info(self, name):
        self.calls.append(("memory_info", name))
        return {"current": self.current, "peak": self.peak}

    @contextlib.contextmanager
    def device(self, name):
        self.calls.append(("device", name))
        yield

    def identity(self, tensor):
        return ("copied", tensor)


# --------------------------------------------------------------------------
# Device description
# --------------------------------------------------------------------------


def test_describe_cpu_names_the_processor():
    info = device.describe(FakeTF(gpus=0))
    assert info == {"kind": "cpu", "name": device.cpu_model(), "gpus": 0}
    assert info["name"]  # /proc/cpuinfo's model name, or the platform's
    line = device.summary(info)
    assert line.startswith(f"CPU {info['name']}; memory columns: resident memory")


def test_describe_gpu_reads_the_device_details():
    fake = FakeTF(gpus=2)
    info = device.describe(fake)
    assert info == {**GPU_INFO, "gpus": 2}
    assert ("details", "/physical_device:GPU:0") in fake.calls
    line = device.summary(info)
    assert line.startswith("GPU NVIDIA H100 80GB HBM3, 1 of 2 GPUs")
    assert "compute capability 9.0" in line and "TensorFloat-32 on" in line
    assert "memory columns: TensorFlow's GPU allocator" in line


def test_describe_gpu_without_details_uses_the_device_name():
    fake = FakeTF()
    fake.config.experimental.get_device_details = lambda d: {}
    info = device.describe(fake)
    assert info["kind"] == "gpu" and info["name"] == "/physical_device:GPU:0"
    assert info["compute_capability"] is None


def test_describe_with_tensorflow_matches_what_it_sees():
    import tensorflow as tf

    info = device.describe(tf)
    assert info["kind"] == ("gpu" if tf.config.list_physical_devices("GPU") else "cpu")
    json.dumps(info)  # what the probe prints


def test_probe_reads_the_last_json_line(monkeypatch):
    printed = "a warning\n" + json.dumps(GPU_INFO) + "\n"
    monkeypatch.setattr(
        device.subprocess,
        "run",
        lambda *a, **k: subprocess.CompletedProcess(a, 0, printed, "log"),
    )
    assert device.probe() == GPU_INFO


def test_probe_failure_falls_back_to_the_cpu(monkeypatch):
    def broken(*args, **kwargs):
        return subprocess.CompletedProcess(args, 1, "", "ImportError: no tensorflow")

    monkeypatch.setattr(device.subprocess, "run", broken)
    info = device.probe()
    assert info["kind"] == "cpu" and info["name"] == device.cpu_model()
    assert "ImportError: no tensorflow" in info["probe_error"]
    assert "device probe failed" in device.summary(info)


# --------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------


def _fake_status(monkeypatch, rss, vm_size):
    values = {"VmRSS": rss, "VmSize": vm_size}
    monkeypatch.setattr(device, "status_bytes", lambda field, pid="self": values[field])


def test_cpu_meter_caps_the_address_space_and_reports_rss(monkeypatch):
    _fake_status(monkeypatch, rss=600 * MIB, vm_size=5 * device.GIB)
    limits = []
    monkeypatch.setattr(device.resource, "setrlimit", lambda *a: limits.append(a))
    monkeypatch.setattr(device, "peak_rss_bytes", lambda: 1000 * MIB)
    meter = device.MemoryMeter(FakeTF(gpus=0), "cpu")
    limit = meter.start(max_memory_gib=2)
    assert limit == 5 * device.GIB + 3 * device.GIB  # mapped + cap + 1 GiB
    assert limits == [(device.resource.RLIMIT_AS, (limit, limit))]
    meter.before_timing()  # nothing to do on CPU
    assert meter.result() == {
        "peak_rss_mib": 1000.0,
        "baseline_rss_mib": 600.0,
        "delta_rss_mib": 400.0,
    }


def test_cpu_meter_without_a_cap(monkeypatch):
    _fake_status(monkeypatch, rss=600 * MIB, vm_size=5 * device.GIB)
    monkeypatch.setattr(device.resource, "setrlimit", pytest.fail)
    meter = device.MemoryMeter(None, "cpu")
    assert meter.start(max_memory_gib=0) is None
    assert meter.result()["baseline_rss_mib"] == 600.0


def test_cpu_meter_on_this_process():
    meter = device.MemoryMeter(None, "cpu")
    assert meter.start(max_memory_gib=0) is None  # no cap: this is pytest
    result = meter.result()
    assert set(result) == {"peak_rss_mib", "baseline_rss_mib", "delta_rss_mib"}
    assert result["peak_rss_mib"] > 0 and result["baseline_rss_mib"] > 0
    # VmRSS and ru_maxrss are counted apart: Δ can be a fraction of a MiB below 0.
    assert result["delta_rss_mib"] == pytest.approx(
        result["peak_rss_mib"] - result["baseline_rss_mib"]
    )


def test_gpu_meter_measures_the_allocator_peak_of_the_timed_calls(monkeypatch):
    _fake_status(monkeypatch, rss=900 * MIB, vm_size=40 * device.GIB)
    monkeypatch.setattr(device.resource, "setrlimit", pytest.fail)  # no cap
    monkeypatch.setattr(device, "peak_rss_bytes", lambda: 1500 * MIB)
    fake = FakeTF(current=300 * MIB, peak=1324 * MIB)
    meter = device.MemoryMeter(fake, "gpu")
    assert meter.start(max_memory_gib=16) is None
    assert fake.calls == []  # the peak restarts after the warm-up, not here
    meter.before_timing()
    assert fake.calls == [("reset", "GPU:0"), ("memory_info", "GPU:0")]
    result = meter.result()
    assert result == {
        "peak_rss_mib": 1500.0,
        "baseline_rss_mib": 900.0,
        "delta_rss_mib": 600.0,
        "peak_gpu_mib": 1324.0,
        "baseline_gpu_mib": 300.0,
        "delta_gpu_mib": 1024.0,
    }
    assert device.memory_cells(GPU_INFO, result) == (1324.0, 1024.0)
    assert device.memory_cells(CPU_INFO, result) == (1500.0, 600.0)


# --------------------------------------------------------------------------
# Synchronisation, placement, dtypes
# --------------------------------------------------------------------------


class FakeTensor:
    def __init__(self, where):
        self.device = f"/job:localhost/replica:0/task:0/device:{where}:0"
        self.read = 0

    def numpy(self):
        self.read += 1


def test_sync_on_cpu_reads_every_output(monkeypatch):
    import tensorflow as tf

    monkeypatch.setattr(tf.test.experimental, "sync_devices", pytest.fail)
    out, grad = FakeTensor("CPU"), FakeTensor("CPU")
    device.sync((out, [grad, None]))  # None: an unused input's gradient
    assert out.read == grad.read == 1


def test_sync_on_gpu_waits_for_the_device_without_copies(monkeypatch):
    import tensorflow as tf

    synced = []
    monkeypatch.setattr(tf.test.experimental, "sync_devices", lambda: synced.append(1))
    out, grad = FakeTensor("GPU"), FakeTensor("GPU")
    device.sync((out, [grad, None]))
    assert synced == [1] and out.read == grad.read == 0


def test_sync_real_tensors():
    import tensorflow as tf

    device.sync([tf.ones(3), None, {"a": tf.zeros(2)}])


def test_place_copies_to_the_gpu_only_there():
    fake = FakeTF()
    assert device.place(fake, GPU_INFO, ["q", "k"]) == [("copied", "q"), ("copied", "k")]
    assert ("device", "GPU:0") in fake.calls
    assert device.place(fake, CPU_INFO, ("q", "k")) == ["q", "k"]


def test_dtypes_and_policies():
    assert device.default_dtypes(CPU_INFO) == ["float32"]
    assert device.default_dtypes(GPU_INFO) == ["float32", "float16", "bfloat16"]
    assert device.layer_policy("float32") == "float32"
    assert device.layer_policy("float16") == "mixed_float16"
    assert device.layer_policy("bfloat16") == "mixed_bfloat16"


# --------------------------------------------------------------------------
# The tables of both scripts on each device
# --------------------------------------------------------------------------


def _ok(median_s, rss=(700.0, 100.0), gpu=None):
    result = {"status": "ok", "median_s": median_s, "min_s": median_s,
              "times_s": [median_s] * 3, "compile_s": 1.0, "other_cpu_pct": 0.0,
              "peak_rss_mib": rss[0], "delta_rss_mib": rss[1]}  # fmt: skip
    if gpu:
        result.update(peak_gpu_mib=gpu[0], delta_gpu_mib=gpu[1])
    return result


def _attention_cfg(attention, info, dtypes):
    cfg = attention.parse_args(
        ["--only", "keras.dpa,ka.exact", "--modes", "fwd", "--lengths", "1024",
         "--dtypes", ",".join(dtypes)]
    )  # fmt: skip
    return attention.apply_device_defaults(cfg, info)


def test_attention_gpu_table_has_dtype_rows_and_allocator_memory():
    attention = _load("attention")
    cfg = _attention_cfg(attention, GPU_INFO, ["float32", "bfloat16"])
    assert cfg.matmul_size == attention.MATMUL_SIZE["gpu"]
    results = {
        ("keras.dpa", "fwd", 1024, "float32"): _ok(0.002, gpu=(900.0, 512.0)),
        ("ka.exact", "fwd", 1024, "float32"): _ok(0.001, gpu=(800.0, 256.0)),
        ("keras.dpa", "fwd", 1024, "bfloat16"): _ok(0.004, gpu=(600.0, 128.0)),
        ("ka.exact", "fwd", 1024, "bfloat16"): {"status": "oom", "message": "OOM!"},
    }
    for (name, mode, length, _), r in results.items():
        r["flops"] = attention.attention_flops(cfg, length, mode, "op")
    flops = results[("keras.dpa", "fwd", 1024, "float32")]["flops"]
    matmuls = [
        {"status": "ok", "dtype": "float32", "gflops": flops / 0.001 / 1e9},
        {"status": "ok", "dtype": "bfloat16", "gflops": flops / 0.0005 / 1e9},
    ]
    info = {"device": GPU_INFO}
    table = attention.mode_table_markdown(
        cfg, "fwd", results, cfg.implementations, matmuls, info
    )
    lines = table.splitlines()
    assert lines[2] == (
        "| T | dtype | implementation | median ms | min ms | vs ref | compile s | "
        "GFLOP/s | % matmul | peak GPU MiB | Δ GPU MiB | runs | other CPU % |"
    )
    assert lines[3].startswith("|---:|:---|:---|---:|")
    rows = {tuple(c.strip() for c in line.split("|")[2:4]): line for line in lines[4:]}
    # vs ref and % matmul within the row's dtype; memory from the allocator.
    assert "| 0.50× |" in rows[("float32", "`ka.exact`")]
    assert "| 100.0 | 800 | 256 |" in rows[("float32", "`ka.exact`")]
    assert "| 1.00× |" in rows[("bfloat16", "`keras.dpa`")]
    assert "| 12.5 | 600 | 128 |" in rows[("bfloat16", "`keras.dpa`")]
    assert "| OOM | — |" in rows[("bfloat16", "`ka.exact`")]
    footer = attention.footer_markdown(cfg, cfg.implementations, results, info)
    assert "peak GPU = the peak of TensorFlow's GPU allocator" in footer
    assert "`mixed_bfloat16`" in footer
    assert "`ka.exact` forward T=1024 bfloat16: oom: OOM!" in footer


def test_attention_cpu_table_is_unchanged():
    attention = _load("attention")
    cfg = _attention_cfg(attention, CPU_INFO, ["float32"])
    assert cfg.matmul_size == 2048
    results = {("keras.dpa", "fwd", 1024, "float32"): _ok(0.002)}
    results[("keras.dpa", "fwd", 1024, "float32")]["flops"] = 10**9
    matmuls = [{"status": "ok", "when": "start", "gflops": 1000.0}]  # no dtype: float32
    table = attention.mode_table_markdown(
        cfg, "fwd", results, ["keras.dpa"], matmuls, {"device": CPU_INFO}
    )
    assert table.splitlines()[2:] == [
        "| T | implementation | median ms | min ms | vs ref | compile s | GFLOP/s | "
        "% matmul | peak RSS MiB | Δ RSS MiB | runs | other CPU % |",
        "|---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        "| 1024 | `keras.dpa` | 2.00 | 2.00 | 1.00× | 1.00 | 500.0 | 50.0 | 700 | "
        "100 | 3 | 0 |",
    ]
    footer = attention.footer_markdown(cfg, ["keras.dpa"], results, {"device": CPU_INFO})
    assert "peak RSS = ru_maxrss of the worker" in footer and "mixed" not in footer


def test_attention_device_defaults():
    attention = _load("attention")
    cfg = attention.apply_device_defaults(attention.parse_args([]), GPU_INFO)
    assert cfg.dtypes == ["float32", "float16", "bfloat16"]
    assert cfg.lengths == attention.GPU_LENGTHS and cfg.lengths[-1] == 65536
    cfg = attention.apply_device_defaults(attention.parse_args([]), CPU_INFO)
    assert cfg.dtypes == ["float32"] and cfg.lengths == attention.DEFAULT_LENGTHS
    # --quick, --lengths, --dtypes and the older --dtype win over the device.
    cfg = attention.apply_device_defaults(
        attention.parse_args(["--quick", "--dtype", "float16"]), GPU_INFO
    )
    assert cfg.lengths == attention.QUICK_LENGTHS and cfg.dtypes == ["float16"]
    with pytest.raises(SystemExit):
        attention.parse_args(["--dtypes", "float8"])


def test_variants_gpu_table_ratios_per_dtype_on_allocator_memory():
    variants = _load("variants")
    cfg = variants.parse_args(["--only", "keras.mha,full,linear", "--lengths", "4096",
                               "--dtypes", "float32,float16"])  # fmt: skip
    variants.apply_device_defaults(cfg, GPU_INFO)
    results = {
        ("keras.mha", 4096, "float32"): _ok(0.010, gpu=(2000.0, 1000.0)),
        ("full", 4096, "float32"): _ok(0.008, gpu=(1800.0, 800.0)),
        ("linear", 4096, "float32"): _ok(0.004, rss=(700.0, 900.0), gpu=(400.0, 100.0)),
        ("keras.mha", 4096, "float16"): _ok(0.005, gpu=(1000.0, 500.0)),
        ("full", 4096, "float16"): _ok(0.004, gpu=(900.0, 400.0)),
        ("linear", 4096, "float16"): {"status": "timeout", "message": "killed"},
    }
    speed, memory = variants._ratios(cfg, results, "linear", 4096, "float32")
    assert speed == pytest.approx(2.0) and memory == pytest.approx(0.1)
    speed, memory = variants._ratios(cfg, results, "full", 4096, "float16")
    assert speed == pytest.approx(1.0) and memory == pytest.approx(0.8)
    table = variants.table_markdown(cfg, results)
    assert "| T | dtype | variant | steps/s | speed vs full | median ms | peak GPU MiB | Δ GPU MiB |" in table
    assert "| 4096 | float32 | `linear` | 250.00 | 2.00× | 4.0 | 400 | 100 | 0.10× |" in table
    assert "| 4096 | float16 | `linear` | timeout | — |" in table
    summary = variants.summary_markdown(cfg, results)
    assert "| `full` | float16 | 1.00× | 0.80× |" in summary
    footer = variants.footer_markdown(cfg, results)
    assert "Δ GPU ÷ Δ GPU of `keras.mha`" in footer and "`mixed_float16`" in footer


def test_variants_cpu_table_is_unchanged():
    variants = _load("variants")
    cfg = variants.parse_args(["--only", "keras.mha,full", "--lengths", "1024"])
    variants.apply_device_defaults(cfg, CPU_INFO)
    assert cfg.dtypes == ["float32"]
    results = {("keras.mha", 1024, "float32"): _ok(0.5, rss=(900.0, 300.0)),
               ("full", 1024, "float32"): _ok(0.25, rss=(800.0, 150.0))}  # fmt: skip
    lines = variants.table_markdown(cfg, results).splitlines()
    assert lines[2] == (
        "| T | variant | steps/s | speed vs full | median ms | peak RSS MiB | "
        "Δ RSS MiB | memory vs keras | compile s | runs | other CPU % |"
    )
    assert lines[5] == "| 1024 | `full` | 4.00 | 1.00× | 250.0 | 800 | 150 | 0.50× | 1.0 | 3 | 0 |"
    assert variants.summary_markdown(cfg, results).splitlines()[2] == (
        "| variant | speed T=1024 | mem T=1024 |"
    )
