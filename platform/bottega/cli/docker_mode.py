"""Docker mode's ``up`` and ``down``, told in Bottega's words.

Compose's own output (build steps, pip, apt) goes to ``<home>/logs/compose.log``; the terminal
gets what a person needs: the checks before the build, the build's progress, each service as it
becomes healthy, and on a failure the log's last lines and where the rest is.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bottega.cli.common import console
from bottega.errors import BottegaError, ServiceStartError
from bottega.stack.compose import (
    COMPOSE_FILE,
    ComposeProject,
    container_statuses,
    load_compose,
)
from bottega.stack.images import Engine, require_base_image, stage_build_ca
from bottega.stack.runner import ServiceStatus
from bottega.stack.settings import StackSettings

GRAFANA = "grafana"
# How often the narration looks at the build's log and at the containers.
POLL_S = 2.0
# How often a line is printed while nothing changes, where no live status line can be drawn.
QUIET_S = 30.0
TAIL_LINES = 15
# Step lines of the classic builder ("Step 3/12 : RUN ...") and of BuildKit ("#7 [app 3/12] ...").
_STEP = re.compile(r"^(?:Step \d+/\d+ : .*|#\d+ \[[^\]]+\] .*)$")


def compose_log(settings: StackSettings) -> Path:
    """Where compose's own output goes."""
    return settings.home / "logs" / "compose.log"


def tail(path: Path, lines: int = TAIL_LINES) -> list[str]:
    """The last ``lines`` non-empty lines of ``path``."""
    if not path.exists():
        return []
    text = path.read_text(errors="replace").splitlines()
    return [line for line in text if line.strip()][-lines:]


def last_step(path: Path, since: int) -> str:
    """The newest build step in ``path`` after byte ``since``, shortened for one line."""
    if not path.exists():
        return ""
    with path.open("rb") as handle:
        handle.seek(since)
        text = handle.read().decode(errors="replace")
    steps = [line for line in text.splitlines() if _STEP.match(line.strip())]
    return (steps[-1].strip()[:100] + "...") if steps else ""


def wait_narrated(
    process: subprocess.Popen[bytes],
    describe: Callable[[], str],
    what: str,
    *,
    on_tick: Callable[[], None] | None = None,
) -> int:
    """Wait for ``process``; meanwhile show ``describe()`` as a live line on a terminal, or print
    it every QUIET_S seconds elsewhere (a CI log). ``on_tick`` runs every poll."""
    started = time.monotonic()
    printed = started
    with console.status(what) as status:
        while process.poll() is None:
            time.sleep(POLL_S)
            if on_tick is not None:
                on_tick()
            elapsed = time.monotonic() - started
            line = f"{what} ({elapsed:.0f}s) {describe()}".rstrip()
            status.update(line)
            if not console.is_terminal and time.monotonic() - printed >= QUIET_S:
                console.print(line, highlight=False, markup=False)
                printed = time.monotonic()
    return int(process.returncode)


def fail_with_log(message: str, path: Path) -> BottegaError:
    """Print the log's last lines; the error that says where the whole log is."""
    for line in tail(path):
        console.print(f"  [dim]|[/] {line}", highlight=False, markup=True)
    return ServiceStartError(message, hint=f"compose's whole output: {path}")


def with_grafana(project: ComposeProject, engine: Engine) -> bool:
    """Add Grafana's profile when it is wanted and its image can be had; say so when it cannot."""
    if not project.settings.stack.grafana:
        return False
    compose = load_compose(project.settings.infra_dir / COMPOSE_FILE)
    image = str(compose["services"][GRAFANA]["image"])
    why = engine.obtain(image)
    if why is not None:
        console.print(
            f"[yellow]Grafana's image {image} cannot be pulled ({why}): the stack starts "
            "without its dashboards.[/] BOTTEGA_STACK__GRAFANA=false skips this check.",
            highlight=False,
        )
        return False
    project.profiles.append(GRAFANA)
    return True


def docker_up(settings: StackSettings, services: Sequence[str], *, gpu: bool) -> None:
    """Check the engine and the base image, build every image, start the stack and wait until
    each service is healthy (or each job completed), narrating as it goes."""
    project = ComposeProject(settings, gpu=gpu)
    engine = Engine(project.require())
    base = require_base_image(engine, settings.infra_dir)
    with_grafana(project, engine)
    staged = stage_build_ca(settings.stack.build_ca_bundle, settings.infra_dir)
    log_path = compose_log(settings)
    mark = log_path.stat().st_size if log_path.exists() else 0
    console.print(
        f"Docker mode: building the images from {base}"
        + (f", trusting the CA certificates of {settings.stack.build_ca_bundle}" if staged else "")
        + f" (compose's output: {log_path})",
        highlight=False,
    )
    started = time.monotonic()
    # One image at a time: the classic builder would run the stages that images share once per
    # image in parallel; in turn, each image after the first finds them cached.
    build = project.start_logged("--parallel", "1", "build", log_path=log_path)
    if wait_narrated(build, lambda: last_step(log_path, mark), "building") != 0:
        raise fail_with_log("building the images failed", log_path)
    console.print(f"images built in {time.monotonic() - started:.0f}s", highlight=False)

    seen: dict[str, str] = {}
    began = time.monotonic()

    def report_changes() -> None:
        try:
            rows = container_statuses(settings)
        except BottegaError:
            return
        for row in rows:
            if row.state in ("healthy", "completed") and seen.get(row.name) != row.state:
                console.print(
                    f"  {row.name:<14} {row.state:<10} {time.monotonic() - began:>4.0f}s",
                    highlight=False,
                )
            seen[row.name] = row.state

    up = project.start_logged(*project.up_args(services), log_path=log_path)
    code = wait_narrated(up, lambda: waiting_for(seen), "starting", on_tick=report_changes)
    report_changes()
    if code != 0:
        raise fail_with_log("the stack did not come up healthy", log_path)


def waiting_for(seen: dict[str, str]) -> str:
    """Which services are not healthy (or completed) yet."""
    waiting = sorted(name for name, state in seen.items() if state not in ("healthy", "completed"))
    return f"waiting for {', '.join(waiting)}" if waiting else ""


def docker_down(
    settings: StackSettings, services: Sequence[str], *, volumes: bool = False
) -> list[ServiceStatus]:
    """Stop the named services, or remove every container (and with ``volumes``, every volume
    too); the rows of what was running before."""
    project = ComposeProject(settings)
    project.profiles.extend([GRAFANA, "tools"])
    before = [row for row in container_statuses(settings) if row.detail != "no container"]
    if services:
        args = ["stop", *services]
    else:
        args = ["down", "--remove-orphans", *(["--volumes"] if volumes else [])]
    log_path = compose_log(settings)
    process = project.start_logged(*args, log_path=log_path)
    if wait_narrated(process, lambda: "", "stopping") != 0:
        raise fail_with_log(f"docker compose {args[0]} failed", log_path)
    return before
