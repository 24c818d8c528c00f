"""The ``docker`` benchmark: Docker mode on this machine's engine, as a user starts it.

It runs ``make up`` on a compose project of its own (``bottega-bench``, free host ports, a
temporary home) and measures:

- ``up_cold_seconds``: the first ``make up``, with none of the project's images on the engine
  (the OS base aside) and empty volumes: every image built, every service started, a champion
  bootstrapped; ``build_cold_seconds`` is its build alone, from Bottega's narration;
- ``up_warm_seconds``: ``make up`` again after ``make down``: images built, volumes kept;
- ``image_mb_IMAGE``: each image's size (``docker image inspect``); ``image_mb_all`` counts the
  layers they share (the ml image is the app image's layers plus torch's) once;
- ``mem_mb_SERVICE`` and ``mem_mb_total``: each container's memory once the stack has idled
  ``--idle-s`` seconds (``docker stats``, which counts the page cache a container's files use).

``--warm-only`` keeps the images that are there and skips the cold start. The project is
removed, volumes and all, at the end; the images stay.

Removing the images for the cold start fails when another compose project runs them: stop it
first (``make down``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

from bench.broker import free_ports
from bench.harness import PROJECT_ROOT, Benchmark, BenchmarkError, Measurement
from bottega.settings import DEFAULT_HOST
from bottega.stack.compose import COMPOSE_FILE, load_compose

PROJECT = "bottega-bench"
PUBLISHED = ("mlflow", "prometheus", "alertmanager", "serving", "trainer", "monitor", "ingest")
_BUILT = re.compile(r"images built in (\d+)s")
_SIZE = re.compile(r"^([\d.]+)\s*([KMG]i?B|B)$")
_UNITS = {"B": 1e-6, "KB": 1e-3, "KiB": 1.024e-3, "MB": 1.0, "MiB": 1.048576, "GB": 1e3}
_UNITS["GiB"] = 1073.741824


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The docker benchmark's options."""
    parser.add_argument("--warm-only", action="store_true", help="keep the images; no cold up")
    parser.add_argument("--idle-s", type=float, default=30.0, help="idle time before docker stats")


def bench_env(home: Path) -> dict[str, str]:
    """`make`'s environment: Docker mode, the bench's project, its home and free ports."""
    ports = dict(zip(PUBLISHED, free_ports(DEFAULT_HOST, len(PUBLISHED)), strict=True))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOTTEGA_")}
    env |= {
        "MODE": "docker",
        "BOTTEGA_HOME": str(home),
        "BOTTEGA_ENV_FILE": str(home / "none.env"),
        "BOTTEGA_STACK__COMPOSE_PROJECT": PROJECT,
        "BOTTEGA_STACK__GRAFANA": "false",
        **{f"BOTTEGA_{name.upper()}__PORT": str(port) for name, port in ports.items()},
    }
    bundle = os.environ.get("BOTTEGA_STACK__BUILD_CA_BUNDLE") or os.environ.get("PIP_CERT")
    if bundle:
        env["BOTTEGA_STACK__BUILD_CA_BUNDLE"] = bundle
    return env


def make(target: str, env: dict[str, str]) -> tuple[float, str]:
    """``make TARGET``: its wall seconds and output; a BenchmarkError when it fails."""
    started = time.monotonic()
    done = subprocess.run(
        ["make", "--no-print-directory", target],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise BenchmarkError(f"make {target} failed: {(done.stdout + done.stderr)[-2000:]}")
    return seconds, done.stdout


def our_images() -> dict[str, str]:
    """The images the compose file builds, by short name (``bottega/ml:0.1.0`` is ``ml``)."""
    services = load_compose(PROJECT_ROOT / "infra" / COMPOSE_FILE)["services"]
    images = {str(s["image"]) for s in services.values() if "build" in s}
    return {image.split("/", 1)[1].split(":", 1)[0]: image for image in sorted(images)}


def docker(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise BenchmarkError(f"docker {args[0]} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def remove_images(images: dict[str, str]) -> None:
    """Remove the project's images (and the build layers under them) for a cold start."""
    present = [image for image in images.values() if docker("images", "--quiet", image).strip()]
    if present:
        docker("rmi", *present)


def image_sizes(images: dict[str, str]) -> dict[str, float]:
    """Each image's size in MB, and the size of all of them with shared layers counted once."""
    sizes: dict[str, float] = {}
    layers: dict[str, int] = {}
    for name, image in images.items():
        inspected = json.loads(docker("image", "inspect", image))[0]
        sizes[f"image_mb_{name}"] = round(inspected["Size"] / 1e6, 1)
        for line in docker("history", "--no-trunc", "--format", "{{.ID}} {{.Size}}", image).split(
            "\n"
        ):
            if line.strip():
                layer, size = line.split(" ", 1)
                layers[layer] = max(layers.get(layer, 0), _bytes(size))
    sizes["image_mb_all"] = round(sum(layers.values()) / 1e6, 1)
    return sizes


def _bytes(text: str) -> int:
    """``docker history``'s human sizes (``1.41GB``, ``0B``) in bytes."""
    match = re.match(r"^([\d.]+)([kMG]?B)$", text.strip())
    if match is None:
        return 0
    scale = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[match.group(2)]
    return int(float(match.group(1)) * scale)


def memory(project: str) -> dict[str, float]:
    """Each running container's memory in MB (``docker stats``), by service, and the total."""
    ids = docker("ps", "--quiet", "--filter", f"label=com.docker.compose.project={project}")
    out: dict[str, float] = {}
    for line in docker(
        "stats", "--no-stream", "--format", "{{.Name}}\t{{.MemUsage}}", *ids.split()
    ).splitlines():
        name, usage = line.split("\t")
        service = name.removeprefix(f"{project}-").rsplit("-", 1)[0]
        used = usage.split("/")[0].strip()
        match = _SIZE.match(used)
        if match is None:
            raise BenchmarkError(f"cannot read docker stats' memory {used!r}")
        out[f"mem_mb_{service}"] = round(float(match.group(1)) * _UNITS[match.group(2)], 1)
    out["mem_mb_total"] = round(sum(out.values()), 1)
    return out


def remove_project(env: dict[str, str]) -> None:
    """Remove the bench's containers and volumes (the secrets compose needs are in its home)."""
    from bottega.settings import load_settings
    from bottega.stack.compose import ComposeProject
    from bottega.stack.settings import StackSettings

    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        project = ComposeProject(load_settings(StackSettings))
        command = project.command("down", "--volumes", "--remove-orphans")
        subprocess.run(command, env=project.environment(), capture_output=True, timeout=600)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run(args: argparse.Namespace) -> Measurement:
    """Cold up, down, warm up, then sizes and memory."""
    images = our_images()
    metrics: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bottega-bench-docker-") as home:
        env = bench_env(Path(home))
        remove_project(env)
        try:
            if not args.warm_only:
                remove_images(images)
                seconds, output = make("up", env)
                metrics["up_cold_seconds"] = round(seconds, 1)
                built = _BUILT.search(output)
                if built:
                    metrics["build_cold_seconds"] = float(built.group(1))
                make("down", env)
            else:
                make("up", env)
                make("down", env)
            seconds, _ = make("up", env)
            metrics["up_warm_seconds"] = round(seconds, 1)
            time.sleep(args.idle_s)
            metrics |= memory(PROJECT)
            metrics |= image_sizes(images)
        finally:
            remove_project(env)
    return Measurement(metrics=metrics, ratios={})


BENCHMARK = Benchmark(
    name="docker",
    summary="Docker mode: cold and warm `make up`, image sizes, the stack's memory",
    add_arguments=add_arguments,
    run=run,
)
