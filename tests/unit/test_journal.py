"""The producer's write-ahead journal: segments are deleted once every event in them is done,
a dead process's segment is claimed by exactly one other, and a live one's never."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from bottega.bus.journal import Journal


def segments(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.journal"))


def test_a_segment_is_deleted_once_sealed_and_every_event_done(tmp_path: Path) -> None:
    journal = Journal(tmp_path, segment_events=2)
    tickets = [journal.append(f"e{i}".encode()) for i in range(3)]
    assert len(segments(tmp_path)) == 2  # the third event opened a second segment
    journal.done(tickets[0])
    journal.done(tickets[1])
    assert len(segments(tmp_path)) == 1  # the first is sealed and done: gone
    assert journal.pending() == 1
    assert journal.close() == 1  # the open one keeps its undone event, for the next process
    assert segments(tmp_path)[0].read_bytes() == b"e2\n"


def test_a_closed_journal_leaves_its_events_for_the_next_process(tmp_path: Path) -> None:
    first = Journal(tmp_path)
    for i in range(3):
        first.append(f"e{i}".encode())
    first.close()
    second = Journal(tmp_path)
    (orphan,) = second.orphans()
    assert orphan.events == [b"e0", b"e1", b"e2"]
    assert second.orphans() == []  # claimed: not offered twice
    for _ in orphan.events:
        second.done(orphan.ticket)
    assert segments(tmp_path) == []


WRITER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from bottega.bus.journal import Journal

    journal = Journal(Path(sys.argv[1]))
    for i in range(5):
        journal.append(f"event-{i}".encode())
    # A line cut short by the kill: never handed on, never answered.
    os.write(journal._current.fd, b"half-writ")
    print("written", flush=True)
    if sys.argv[2] == "die":
        os._exit(9)  # no cleanup, as SIGKILL
    time.sleep(60)
    """
)


def test_a_killed_process_segment_is_claimed_and_a_live_ones_is_not(tmp_path: Path) -> None:
    live = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path / "live"), "live"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert live.stdout is not None and live.stdout.readline().strip() == "written"
        dead = subprocess.run(
            [sys.executable, "-c", WRITER, str(tmp_path / "dead"), "die"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert dead.returncode == 9 and dead.stdout.strip() == "written"
        assert Journal(tmp_path / "live").orphans() == []  # its process holds the lock
        claimer, rival = Journal(tmp_path / "dead"), Journal(tmp_path / "dead")
        (orphan,) = claimer.orphans()
        assert orphan.events == [f"event-{i}".encode() for i in range(5)]
        assert rival.orphans() == []  # one claimant only
    finally:
        live.kill()
        live.wait()
    # Its process gone, the live one's segment is an orphan too.
    assert len(Journal(tmp_path / "live").orphans()) == 1


def test_an_outcome_after_close_leaves_the_segment_to_the_next_process(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    ticket = journal.append(b"late")
    assert journal.close() == 1
    journal.done(ticket)  # a delivery report that came after the stop
    (orphan,) = Journal(tmp_path).orphans()
    assert orphan.events == [b"late"]
