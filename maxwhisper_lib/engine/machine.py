"""What a benchmark ran on: CPU, cores, memory, GPU, OS, package versions, process memory."""

from __future__ import annotations

import os
import platform
import resource
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "max",
    "torch",
    "openai-whisper",
    "faster-whisper",
    "ctranslate2",
    "pywhispercpp",
    "onnxruntime",
    "numpy",
    "jiwer",
)


def _proc_field(path: str, key: str) -> str | None:
    """The value of the first ``key: value`` line of a /proc file (None off Linux)."""
    try:
        for line in Path(path).read_text().splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == key:
                return value.strip()
    except OSError:
        return None
    return None


def cpu_model() -> str:
    return _proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown"


def cpu_architecture() -> str:
    """The machine's architecture as Python names it (``x86_64``, ``aarch64``, ...)."""
    return platform.machine()


def usable_cores() -> int:
    """Cores this process may run on (affinity), which is what the engines' threads share."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_flags() -> set[str]:
    """The CPU's feature flags (/proc/cpuinfo; empty off Linux)."""
    return set((_proc_field("/proc/cpuinfo", "flags") or "").split())


def int8_kernel_path() -> str:
    """The int8 kernels' code path on this CPU: ``"vnni"`` (AVX-512 VNNI), ``"avx2"``
    (vpmaddubsw) or ``"portable"`` (plain SIMD, slower than float32)."""
    flags = cpu_flags()
    if "avx512_vnni" in flags:
        return "vnni"
    return "avx2" if "avx2" in flags else "portable"


def memory_total_gb() -> float | None:
    value = _proc_field("/proc/meminfo", "MemTotal")
    return round(int(value.split()[0]) / 2**20, 1) if value else None


def gpus() -> list[str]:
    """GPU names from nvidia-smi (empty without one), else one entry per MAX accelerator."""
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
                check=True,
            ).stdout
            return [line.strip() for line in out.splitlines() if line.strip()]
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        from max.driver import accelerator_count

        return [f"MAX accelerator {i}" for i in range(accelerator_count())]
    except Exception:  # no usable driver: no GPU
        return []


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed distribution versions (None where not installed)."""
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine_info() -> dict:
    """CPU model, cores (logical, usable), RAM, GPUs, OS, Python, load average."""
    return {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "memory_gb": memory_total_gb(),
        "gpus": gpus(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def rss_mb() -> float:
    """This process's resident set size now, in MiB (psutil, else /proc, else the peak)."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        value = _proc_field("/proc/self/status", "VmRSS")
        return int(value.split()[0]) / 1024 if value else peak_rss_mb()


def peak_rss_mb() -> float:
    """The process's resident high-water mark in MiB (since the last :func:`reset_peak_rss`)."""
    value = _proc_field("/proc/self/status", "VmHWM")
    if value:
        return int(value.split()[0]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def reset_peak_rss() -> bool:
    """Reset the high-water mark to the current RSS (Linux >= 4.0); False where impossible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False
