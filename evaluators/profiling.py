"""What an evaluator costs: GPU figures from NVML when there is a GPU, CPU and RSS otherwise.

A :class:`Profiler` runs a background thread sampling NVML (``nvidia-ml-py``) at about 10 Hz
while its evaluator is *active*, so one run that interleaves several evaluators chunk by chunk
still attributes each sample to the evaluator that was working. Without a GPU (no NVML library,
no driver, or the evaluator runs on the CPU) the profile says so in ``gpu_note`` and records the
process's CPU share and resident memory instead; GPU fields then stay empty, never made up.

Also home to the small device helpers the model evaluators share.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import psutil
from pydantic import Field

from evalwatch.core.telemetry import fragmentation
from evalwatch.evaluators.base import EvaluatorUnavailable
from evalwatch.storage.models import EvaluatorProfile

__all__ = [
    "DeviceOption",
    "DtypeOption",
    "Profiler",
    "cuda_available",
    "resolve_device",
    "resolve_device_dtype",
    "resolve_dtype",
]

#: The ``device`` option of an evaluator that runs a torch model. Runtime-only: it decides
#: where the scores are computed, not what they are.
DeviceOption = Annotated[
    str,
    Field(
        description="auto (CUDA when present), cpu, cuda or cuda:N.",
        json_schema_extra={"runtime": True},
    ),
]
#: The ``dtype`` option that goes with :data:`DeviceOption` (runtime-only as well).
DtypeOption = Annotated[
    Literal["auto", "float32", "float16", "bfloat16"],
    Field(
        description="auto = float16 on CUDA, float32 on CPU.",
        json_schema_extra={"runtime": True},
    ),
]


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (imports torch)."""
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(device: str) -> str:
    """Turn ``auto`` into ``cuda`` when CUDA is present, else ``cpu``; check explicit CUDA asks.

    Args:
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Returns:
        The torch device string to use.

    Raises:
        ValueError: CUDA was asked for but torch sees none.

    Examples:
        >>> resolve_device("cpu")
        'cpu'
    """
    if device == "cpu":
        return "cpu"
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device.startswith("cuda") and not cuda_available():
        raise ValueError(f"device {device!r} requested but torch sees no CUDA device")
    return device


def resolve_dtype(dtype: str, device: str) -> str:
    """``auto`` is float16 on CUDA and float32 elsewhere.

    Examples:
        >>> resolve_dtype("auto", "cuda"), resolve_dtype("auto", "cpu")
        ('float16', 'float32')
    """
    if dtype != "auto":
        return dtype
    return "float16" if device.startswith("cuda") else "float32"


def resolve_device_dtype(evaluator: str, device: str, dtype: str) -> tuple[str, str]:
    """The torch device and dtype an evaluator's ``device`` and ``dtype`` options stand for.

    Args:
        evaluator: The evaluator's name (the error names its option).
        device: Its :data:`DeviceOption`.
        dtype: Its :data:`DtypeOption`.

    Returns:
        The device (see :func:`resolve_device`) and the dtype (see :func:`resolve_dtype`).

    Raises:
        EvaluatorUnavailable: If CUDA is asked for and torch sees none.

    Examples:
        >>> resolve_device_dtype("embedding", "cpu", "auto")
        ('cpu', 'float32')
    """
    try:
        resolved = resolve_device(device)
    except ValueError as exc:
        raise EvaluatorUnavailable(
            f"{exc}; set evaluator_options.{evaluator}.device to cpu or auto"
        ) from exc
    return resolved, resolve_dtype(dtype, resolved)


# ---------------------------------------------------------------------------------------------
# NVML access, isolated so a missing library or driver is one clear note.


class _Nvml:
    """One GPU's NVML handle; ``note`` explains why there is none."""

    def __init__(self, device: str) -> None:
        self.handle: Any = None
        self.note: str | None = None
        self.name: str | None = None
        self.energy_counter = False
        if not device.startswith("cuda"):
            self.note = f"evaluator ran on {device}; no GPU figures recorded"
            return
        try:
            import pynvml
        except ImportError:  # pragma: no cover - nvidia-ml-py is a dependency
            self.note = "nvidia-ml-py is not installed; no GPU figures recorded"
            return
        self._nv = pynvml
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError_LibraryNotFound:
            self.note = "NVML library not found (no NVIDIA driver); no GPU figures recorded"
            return
        except pynvml.NVMLError as exc:
            self.note = f"NVML could not start ({exc}); no GPU figures recorded"
            return
        try:
            self.handle = self._handle_for(device)
            name = pynvml.nvmlDeviceGetName(self.handle)
            self.name = name.decode() if isinstance(name, bytes) else str(name)
        except pynvml.NVMLError as exc:
            self.note = f"NVML has no handle for {device} ({exc}); no GPU figures recorded"
            self.handle = None
            return
        try:
            pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
            self.energy_counter = True
        except pynvml.NVMLError:
            self.energy_counter = False

    def _handle_for(self, device: str) -> Any:
        # torch numbers devices after CUDA_VISIBLE_DEVICES; NVML does not. The UUID bridges them.
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            props = torch.cuda.get_device_properties(index)
            uuid = getattr(props, "uuid", None)
            if uuid is not None:
                text = str(uuid)
                text = text if text.startswith("GPU-") else f"GPU-{text}"
                try:
                    return self._nv.nvmlDeviceGetHandleByUUID(text)
                except self._nv.NVMLError:
                    pass
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
        if visible and visible[0] and index < len(visible) and visible[index].strip().isdigit():
            index = int(visible[index])
        return self._nv.nvmlDeviceGetHandleByIndex(index)

    def sample(self) -> tuple[float, float, float | None, float | None]:
        """Utilisation %, memory used MB, temperature C, power W."""
        nv = self._nv
        util = float(nv.nvmlDeviceGetUtilizationRates(self.handle).gpu)
        mem = float(nv.nvmlDeviceGetMemoryInfo(self.handle).used) / 2**20
        try:
            temp: float | None = float(
                nv.nvmlDeviceGetTemperature(self.handle, nv.NVML_TEMPERATURE_GPU)
            )
        except nv.NVMLError:
            temp = None
        try:
            power: float | None = float(nv.nvmlDeviceGetPowerUsage(self.handle)) / 1000.0
        except nv.NVMLError:
            power = None
        return util, mem, temp, power

    def energy_mj(self) -> int | None:
        if not self.energy_counter:
            return None
        try:
            return int(self._nv.nvmlDeviceGetTotalEnergyConsumption(self.handle))
        except self._nv.NVMLError:
            return None

    def close(self) -> None:
        if getattr(self, "_nv", None) is not None and self.handle is not None:
            with suppress(self._nv.NVMLError):
                self._nv.nvmlShutdown()


@dataclass
class _Series:
    """Samples taken while the evaluator was active, split into active segments."""

    util: list[float] = field(default_factory=list)
    mem_mb: list[float] = field(default_factory=list)
    temp_c: list[float] = field(default_factory=list)
    power_w: list[float] = field(default_factory=list)
    cpu_pct: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    energy_j: float = 0.0
    counter_energy_j: float = 0.0
    # (time, power) of the current segment's last sample, for trapezoid integration.
    last_power: tuple[float, float] | None = None


class Profiler:
    """Profiles one evaluator over one run.

    Use :meth:`loading` around the model load and :meth:`active` around each batch; the
    background sampler only records while a batch is running.

    Args:
        evaluator: Evaluator name.
        version: Evaluator version.
        device: The torch device the evaluator runs on (``cpu``, ``cuda``, ``cuda:1``,
            ``remote`` ...). GPU sampling happens only for CUDA devices.
        interval_s: Sampling period (0.1 s = 10 Hz).

    Examples:
        >>> with Profiler("heuristics", "1", device="cpu") as prof:
        ...     with prof.active():
        ...         prof.add(items=3)
        >>> p = prof.profile(run_id=1)
        >>> p.n_items, p.gpu_available, p.gpu_util_mean is None
        (3, False, True)
    """

    def __init__(
        self, evaluator: str, version: str, device: str = "cpu", interval_s: float = 0.1
    ) -> None:
        self.evaluator = evaluator
        self.version = version
        self.device = device
        self.interval_s = interval_s
        self.n_items = 0
        self.n_tokens: int | None = None
        self.seconds = 0.0
        self.load_seconds: float | None = None
        self.torch_peak_mb: float | None = None
        self._series = _Series()
        self._lock = threading.Lock()
        self._active = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._nvml: _Nvml | None = None
        self._proc = psutil.Process()
        self._segment_start = 0.0
        self._energy_start: int | None = None
        self._details: dict[str, Any] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Profiler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Open NVML (if the device is a GPU) and start the sampler thread."""
        if self._thread is not None:
            return
        self._nvml = _Nvml(self.device)
        self._proc.cpu_percent(None)  # primes psutil's CPU counter
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"profiler-{self.evaluator}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling and release NVML."""
        self._stop.set()
        self._active.set()  # wakes the thread so it can see the stop flag
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._active.clear()
        if self._nvml is not None:
            self._nvml.close()

    def set_device(self, device: str) -> None:
        """Change the device after load resolved ``auto``; restarts sampling if running."""
        if device == self.device:
            return
        running = self._thread is not None
        if running:
            self.stop()
        self.device = device
        if running:
            self.start()

    # -- measuring ---------------------------------------------------------------------------

    @contextmanager
    def loading(self) -> Iterator[None]:
        """Time a model load (kept separate from throughput)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.load_seconds = (self.load_seconds or 0.0) + time.perf_counter() - t0

    @contextmanager
    def active(self) -> Iterator[None]:
        """Mark the evaluator as working: time it and let the sampler record."""
        torch = self._torch_cuda()
        if torch is not None:
            torch.cuda.reset_peak_memory_stats(self._cuda_index())
        self._segment_start = time.perf_counter()
        nv = self._nvml
        self._energy_start = nv.energy_mj() if nv is not None and nv.handle is not None else None
        self._sample()  # one sample at each segment edge so integration covers it
        self._active.set()
        try:
            yield
        finally:
            self._active.clear()
            if torch is not None:
                torch.cuda.synchronize(self._cuda_index())
                peak = torch.cuda.max_memory_allocated(self._cuda_index()) / 2**20
                self.torch_peak_mb = max(self.torch_peak_mb or 0.0, peak)
                self._note_fragmentation(torch.cuda.memory_stats(self._cuda_index()))
            self._sample()
            end_energy = nv.energy_mj() if nv is not None and nv.handle is not None else None
            with self._lock:
                self.seconds += time.perf_counter() - self._segment_start
                self._series.last_power = None
                if self._energy_start is not None and end_energy is not None:
                    self._series.counter_energy_j += (end_energy - self._energy_start) / 1000.0

    def _note_fragmentation(self, stats: Mapping[str, Any]) -> None:
        """Keep the caching allocator's fragmentation at a segment's end (the worst seen).

        ``memory.fragmentation`` = 1 - allocated / reserved (evalwatch.core.telemetry), from
        ``torch.cuda.memory_stats``; stored in the profile's details.
        """
        share = fragmentation(
            float(stats.get("allocated_bytes.all.current", 0)),
            float(stats.get("reserved_bytes.all.current", 0)),
        )
        if share is not None:
            self._details["memory_fragmentation"] = round(
                max(share, float(self._details.get("memory_fragmentation", 0.0))), 4
            )

    def add(self, items: int, tokens: int | None = None) -> None:
        """Count work done (call inside or after :meth:`active`)."""
        self.n_items += items
        if tokens is not None:
            self.n_tokens = (self.n_tokens or 0) + tokens

    def note(self, **details: Any) -> None:
        """Attach extra JSON-serialisable facts to the profile's ``details``."""
        self._details.update(details)

    # -- sampling ----------------------------------------------------------------------------

    def _torch_cuda(self) -> Any:
        # Only when torch is already imported: profiling must never pull torch in.
        torch = sys.modules.get("torch")
        if torch is None or not self.device.startswith("cuda"):
            return None
        if not torch.cuda.is_available() or not torch.cuda.is_initialized():
            return None
        return torch

    def _cuda_index(self) -> int:
        return int(self.device.split(":", 1)[1]) if ":" in self.device else 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self._active.wait()
            if self._stop.is_set():
                return
            self._sample()
            self._stop.wait(self.interval_s)

    def _sample(self) -> None:
        now = time.perf_counter()
        try:
            cpu = self._proc.cpu_percent(None)
            rss = self._proc.memory_info().rss / 2**20
        except psutil.Error:  # pragma: no cover - the process is ourselves
            cpu, rss = None, None
        gpu: tuple[float, float, float | None, float | None] | None = None
        nv = self._nvml
        if nv is not None and nv.handle is not None:
            try:
                gpu = nv.sample()
            except Exception as exc:  # a flaky sensor must not stop a run
                self._details["nvml_sample_error"] = str(exc)
        with self._lock:
            s = self._series
            if cpu is not None and rss is not None:
                s.cpu_pct.append(cpu)
                s.rss_mb.append(rss)
            if gpu is not None:
                util, mem, temp, power = gpu
                s.util.append(util)
                s.mem_mb.append(mem)
                if temp is not None:
                    s.temp_c.append(temp)
                if power is not None:
                    s.power_w.append(power)
                    if s.last_power is not None:
                        t0, p0 = s.last_power
                        s.energy_j += (now - t0) * (p0 + power) / 2.0
                    s.last_power = (now, power)

    # -- result ------------------------------------------------------------------------------

    def profile(self, run_id: int) -> EvaluatorProfile:
        """The summary row for the store.

        Args:
            run_id: The evaluation run this profile belongs to.

        Returns:
            An unsaved :class:`~storage.models.EvaluatorProfile`.
        """
        with self._lock:
            s = self._series
            nv = self._nvml
            gpu = bool(nv is not None and nv.handle is not None and s.util)
            details = dict(self._details)
            details["cpu_samples"] = len(s.cpu_pct)
            if nv is not None and nv.name:
                details["gpu_name"] = nv.name
            if gpu:
                details["gpu_samples"] = len(s.util)
                details["gpu_mem_note"] = "NVML memory used is device-wide (all processes)"
                if nv is not None and nv.energy_counter:
                    details["gpu_energy_counter_j"] = round(s.counter_energy_j, 3)
            note = None if gpu else (nv.note if nv is not None and nv.note else None)
            if note is None and not gpu:
                note = "no GPU samples were taken (the evaluator did no work)"
            secs = self.seconds
            return EvaluatorProfile(
                run_id=run_id,
                evaluator=self.evaluator,
                evaluator_version=self.version,
                device=self.device,
                gpu_available=gpu,
                gpu_note=note,
                n_items=self.n_items,
                n_tokens=self.n_tokens,
                seconds=secs,
                load_seconds=self.load_seconds,
                items_per_s=self.n_items / secs if secs > 0 and self.n_items else None,
                tokens_per_s=self.n_tokens / secs if secs > 0 and self.n_tokens else None,
                gpu_util_mean=_mean(s.util) if gpu else None,
                gpu_util_max=max(s.util) if gpu else None,
                gpu_mem_peak_mb=max(s.mem_mb) if gpu else None,
                gpu_temp_max_c=max(s.temp_c) if gpu and s.temp_c else None,
                gpu_power_mean_w=_mean(s.power_w) if gpu and s.power_w else None,
                gpu_energy_j=s.energy_j if gpu and s.power_w else None,
                torch_peak_mb=self.torch_peak_mb,
                cpu_percent_mean=_mean(s.cpu_pct) if s.cpu_pct else None,
                rss_peak_mb=max(s.rss_mb) if s.rss_mb else None,
                details=details or None,
            )


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)
