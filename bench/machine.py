"""The machine and the software a benchmark ran on, for its record."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
from pydantic import BaseModel, ConfigDict

from bottega.stack.services import kafka_version
from bottega.stack.settings import StackSettings

# The packages whose versions move the numbers; each record names them.
KEY_PACKAGES = (
    "kafka-python",
    "torch",
    "mlflow",
    "feast",
    "bentoml",
    "evidently",
    "prometheus-client",
)


class Machine(BaseModel):
    """The hardware a record was measured on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cores: int
    memory_gib: float
    cpu_model: str | None
    gpu: str | None


def describe_machine() -> Machine:
    """The cores this process may run on, total memory, the CPU model and the GPU, if any."""
    return Machine(
        cores=len(os.sched_getaffinity(0)),
        memory_gib=round(psutil.virtual_memory().total / 2**30, 1),
        cpu_model=_cpu_model(),
        gpu=_gpu(),
    )


def package_versions(project_root: Path) -> dict[str, str | None]:
    """Python's version, each key package's (None when absent) and the Kafka broker's."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in KEY_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    try:
        versions["kafka-broker"] = kafka_version(StackSettings(project_root=project_root))
    except (OSError, ValueError):
        versions["kafka-broker"] = None
    return versions


def _cpu_model() -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return None


def _gpu() -> str | None:
    # Importing torch costs seconds; ask it only when a benchmark has imported it already.
    torch = sys.modules.get("torch")
    if torch is not None:
        if torch.cuda.is_available():
            return str(torch.cuda.get_device_name(0))
        return None
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        done = subprocess.run(
            [smi, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not names:
        return None
    return f"{len(names)} x {names[0]}" if len(names) > 1 else names[0]
