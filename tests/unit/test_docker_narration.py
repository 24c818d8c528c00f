"""Docker mode's narration: the newest build step of this run, from compose's log, for the live
line; the log's last lines on a failure."""

from __future__ import annotations

from pathlib import Path

from bottega.cli.docker_mode import last_step, tail


def test_the_newest_step_of_this_run_is_shown_for_either_builder(tmp_path: Path) -> None:
    log = tmp_path / "compose.log"
    log.write_text("Step 9/9 : CMD old run\n")
    mark = log.stat().st_size
    assert last_step(log, mark) == ""  # nothing of this run yet
    with log.open("a") as out:
        out.write("Step 3/12 : RUN apt-get update\n ---> Running in 1f2e\nGet:1 http://deb\n")
    assert last_step(log, mark) == "Step 3/12 : RUN apt-get update..."
    with log.open("a") as out:
        out.write("#7 [app 4/12] RUN pip install --quiet " + "x" * 200 + "\n#7 12.3 Collecting\n")
    shown = last_step(log, mark)
    assert shown.startswith("#7 [app 4/12] RUN pip install") and len(shown) == 103
    assert last_step(tmp_path / "missing.log", 0) == ""


def test_a_failure_shows_the_last_lines_that_say_something(tmp_path: Path) -> None:
    log = tmp_path / "compose.log"
    log.write_text("\n".join(f"line {i}" for i in range(30)) + "\n\n\n")
    assert tail(log, 3) == ["line 27", "line 28", "line 29"]
    assert tail(tmp_path / "missing.log") == []
