"""A write-ahead journal for a producer: what was handed to Kafka survives the process's death.

A producer that batches (librdkafka lingers 50 ms) holds events in memory that the caller has
already been told are sent. A killed process loses them: in Docker mode, a container's death
takes every process in it at once, with no time to flush. The journal closes that gap:

- :meth:`Journal.append` writes the event's bytes to the process's own segment file (one
  ``write``, into the page cache: it survives the process, not the machine) before the event is
  handed to the producer;
- :meth:`Journal.done` is called with the event's ticket when its outcome is known; a segment
  whose every event is done, and that no longer takes new ones, is deleted;
- :meth:`Journal.orphans` finds the segments of processes that died, claims each one, and returns
  its events, to be published again. A segment does not record which of its events were
  delivered, so all of them are published again, the delivered ones too: a segment holds about
  a second of events (``segment_seconds``), and the consumers see each event at least once.
  They carry their own ``event_id``, so a consumer that keys on it keeps one.

A live process holds an exclusive ``flock`` on each segment it has not finished; the kernel drops
it when the process dies, however it dies. That lock is how a segment is known to be an orphan,
and how two processes starting together never claim the same one.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

SUFFIX = ".journal"


@dataclass(eq=False)
class _Segment:
    path: Path
    fd: int
    written: int = 0
    done: int = 0
    sealed: bool = False
    opened: float = field(default_factory=time.monotonic)

    @property
    def finished(self) -> bool:
        return self.sealed and self.done >= self.written


@dataclass(frozen=True)
class Ticket:
    """Which segment an event was written to: hand it back to :meth:`Journal.done`."""

    segment: _Segment


@dataclass(frozen=True)
class Orphan:
    """A dead process's segment, claimed by this one: its events, to be published again."""

    path: Path
    events: list[bytes]
    ticket: Ticket


class Journal:
    """One process's journal segments in ``directory``; thread-safe.

    A segment takes events until it holds ``segment_events`` or is ``segment_seconds`` old.
    """

    def __init__(
        self, directory: Path, *, segment_events: int = 10_000, segment_seconds: float = 1.0
    ) -> None:
        self.directory = directory
        self.segment_events = segment_events
        self.segment_seconds = segment_seconds
        self._lock = threading.Lock()
        self._current: _Segment | None = None
        self._open: set[_Segment] = set()
        self._serial = 0

    def append(self, payload: bytes) -> Ticket:
        """Write one event (no newline in it) to the current segment; its ticket."""
        line = payload + b"\n"
        with self._lock:
            segment = self._current
            if segment is None or self._full(segment):
                segment = self._rotate()
            os.write(segment.fd, line)
            segment.written += 1
            return Ticket(segment)

    def done(self, ticket: Ticket) -> None:
        """The event's outcome is known: delivered, or given up on and counted."""
        with self._lock:
            segment = ticket.segment
            if segment not in self._open:
                return  # left to the next process by close(): its file is not ours any more
            segment.done += 1
            if segment.finished:
                self._delete(segment)

    def orphans(self) -> list[Orphan]:
        """Claim every segment whose process is gone; their events, to be published again.

        Each claimed segment is this process's to finish: it is deleted once every one of its
        events is :meth:`done`. An empty one is deleted at once.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            mine = {segment.path for segment in self._open}
        claimed = []
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            if path in mine:
                continue
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue  # finished by its owner, or claimed and deleted by another process
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue  # its process is alive
            if not _still_named(fd, path):
                os.close(fd)
                continue  # finished and deleted while this process waited for its lock
            try:
                with os.fdopen(os.dup(fd), "rb") as handle:
                    # A line cut short by the death (no newline yet) was never handed to the
                    # producer: the caller was not answered either.
                    events = [line[:-1] for line in handle if line.endswith(b"\n")]
            except OSError as exc:
                os.close(fd)  # and its lock: another process may read it
                log.warning(
                    "could not read a journal segment",
                    extra={"segment": path.name, "error": repr(exc)},
                )
                continue
            segment = _Segment(path, fd, written=len(events), sealed=True)
            with self._lock:
                self._open.add(segment)
                if segment.finished:
                    self._delete(segment)
            if events:
                claimed.append(Orphan(path, events, Ticket(segment)))
            log.info("journal segment claimed", extra={"segment": path.name, "events": len(events)})
        return claimed

    def pending(self) -> int:
        """Events written whose outcome is not known yet, over every open segment."""
        with self._lock:
            return sum(segment.written - segment.done for segment in self._open)

    def close(self) -> int:
        """Stop taking events. Finished segments are deleted; the others stay on disk for the
        next process to claim. How many events they hold that are not done."""
        with self._lock:
            if self._current is not None:
                self._current.sealed = True
                self._current = None
            left = 0
            for segment in list(self._open):
                if segment.finished:
                    self._delete(segment)
                else:
                    left += segment.written - segment.done
                    os.close(segment.fd)  # the lock goes with it: the segment is an orphan now
                    self._open.discard(segment)
            return left

    def _full(self, segment: _Segment) -> bool:
        return (
            segment.written >= self.segment_events
            or time.monotonic() - segment.opened >= self.segment_seconds
        )

    def _rotate(self) -> _Segment:
        """Seal the current segment and open a new one, locked before it gets its name, so
        that no other process ever sees it unlocked."""
        if self._current is not None:
            self._current.sealed = True
            if self._current.finished:
                self._delete(self._current)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._serial += 1
        stem = f"{os.getpid()}-{time.time_ns()}-{self._serial}"
        hidden = self.directory / f".{stem}.tmp"
        fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = self.directory / f"{stem}{SUFFIX}"
        os.replace(hidden, path)
        segment = _Segment(path, fd)
        self._open.add(segment)
        self._current = segment
        return segment

    def _delete(self, segment: _Segment) -> None:
        """Remove a finished segment, then let go of its lock."""
        segment.path.unlink(missing_ok=True)
        os.close(segment.fd)
        self._open.discard(segment)


def _still_named(fd: int, path: Path) -> bool:
    """True when ``path`` still names the file open on ``fd``."""
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)
