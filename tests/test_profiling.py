from __future__ import annotations

import subprocess
import sys
import time

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from evalwatch.evaluators.profiling import Profiler, resolve_device, resolve_dtype
from evalwatch.storage.models import EvaluatorProfile
from evalwatch.storage.repo import create_run, write_profile

GPU_FIELDS = [
    "gpu_util_mean",
    "gpu_util_max",
    "gpu_mem_peak_mb",
    "gpu_temp_max_c",
    "gpu_power_mean_w",
    "gpu_energy_j",
]


def _nvml_works() -> bool:
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


def _busy(seconds: float) -> int:
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += sum(range(500))
    return n


def test_cpu_evaluator_records_cpu_and_rss_and_no_gpu_numbers() -> None:
    with Profiler("heuristics", "1", device="cpu") as prof:
        with prof.loading():
            time.sleep(0.05)
        with prof.active():
            _busy(0.4)
            prof.add(items=200, tokens=1000)
        time.sleep(0.3)  # idle: nothing is sampled outside active()
    p = prof.profile(run_id=1)
    assert p.gpu_available is False
    assert p.gpu_note and "cpu" in p.gpu_note and "no GPU figures" in p.gpu_note
    for f in GPU_FIELDS:
        assert getattr(p, f) is None, f
    assert p.torch_peak_mb is None
    assert p.rss_peak_mb is not None and p.rss_peak_mb > 10
    assert p.cpu_percent_mean is not None and p.cpu_percent_mean > 0
    assert p.details is not None
    # About 10 Hz over 0.4 s plus one sample at each edge, and none while idle.
    assert 3 <= p.details["cpu_samples"] <= 9
    assert p.n_items == 200 and p.n_tokens == 1000
    assert 0.35 <= p.seconds < 1.0
    assert p.items_per_s == pytest.approx(200 / p.seconds)
    assert p.tokens_per_s == pytest.approx(1000 / p.seconds)
    assert p.load_seconds is not None and p.load_seconds >= 0.05


def test_cuda_device_without_nvml_says_so_and_fakes_nothing() -> None:
    with Profiler("embedding", "1", device="cuda") as prof, prof.active():
        _busy(0.2)
        prof.add(items=10)
    p = prof.profile(run_id=1)
    if _nvml_works():  # a GPU machine: real NVML figures
        assert p.gpu_available is True
        assert p.gpu_util_mean is not None and p.gpu_mem_peak_mb is not None
    else:
        assert p.gpu_available is False
        assert p.gpu_note is not None and "NVML" in p.gpu_note
        for f in GPU_FIELDS:
            assert getattr(p, f) is None, f
        assert p.rss_peak_mb is not None


def test_profile_without_work_has_no_rates() -> None:
    with Profiler("toxicity", "1", device="cpu") as prof:
        pass
    p = prof.profile(run_id=1)
    assert p.n_items == 0 and p.items_per_s is None and p.tokens_per_s is None
    assert p.seconds == 0.0


def test_several_active_segments_accumulate() -> None:
    with Profiler("heuristics", "1", device="cpu") as prof:
        for _ in range(3):
            with prof.active():
                time.sleep(0.1)
                prof.add(items=5)
            time.sleep(0.1)
    p = prof.profile(run_id=1)
    assert p.n_items == 15
    assert 0.28 <= p.seconds < 0.6


def test_profile_is_stored(sqlite_engine: Engine) -> None:
    run = create_run(sqlite_engine, "traffic")
    assert run.id is not None
    with Profiler("heuristics", "1", device="cpu") as prof, prof.active():
        prof.add(items=3)
    pid = write_profile(sqlite_engine, prof.profile(run.id))
    with Session(sqlite_engine) as s:
        row = s.exec(select(EvaluatorProfile).where(EvaluatorProfile.id == pid)).one()
    assert row.evaluator == "heuristics" and row.n_items == 3 and row.gpu_available is False
    assert row.rss_peak_mb is not None and row.gpu_util_mean is None


@pytest.mark.parametrize(
    ("dtype", "device", "expected"),
    [
        ("auto", "cuda", "float16"),
        ("auto", "cuda:1", "float16"),
        ("auto", "cpu", "float32"),
        ("bfloat16", "cpu", "bfloat16"),
    ],
)
def test_resolve_dtype(dtype: str, device: str, expected: str) -> None:
    assert resolve_dtype(dtype, device) == expected


def test_resolve_device() -> None:
    import torch

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            resolve_device("cuda")


def test_importing_evaluators_and_profiling_does_not_import_torch() -> None:
    code = (
        "import sys, evaluators, evaluators.profiling as p\n"
        "with p.Profiler('x', '1', device='cuda') as prof:\n"
        "    with prof.active(): pass\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'detoxify', 'transformers')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "print(evaluators.evaluator_names())\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "embedding" in res.stdout and "toxicity" in res.stdout
