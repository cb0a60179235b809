"""Events on their way to the broker: in order, bounded, with the last acknowledged id on disk.

The event log stays the source of truth. The outbox holds the records written since the last
event the broker acknowledged; the id of that event is kept in ``<events file>.mqtt-ack`` so that
a restarted door finds, in the event file and its rotated backups, what is still to be sent.
Delivery is at least once: an event sent but not acknowledged before a disconnection (or a
crash) is sent again, with the same id.

Only the frame loop calls ``put`` (O(1), never blocks for long); everything else runs in the
publisher's thread. One lock guards both.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("edge.mqtt")

ACK_SUFFIX = ".mqtt-ack"


@dataclass
class Entry:
    id: str
    record: dict[str, object]
    n: int  # position in the outbox's order
    acked: bool = field(default=False)


def ack_path_for(events_output: str) -> Path | None:
    """Where the last acknowledged id is kept; None when events go to stdout (nothing to replay)."""
    return None if events_output == "-" else Path(events_output + ACK_SUFFIX)


def read_event_records(events_output: str, backups: int) -> Iterator[dict[str, object]]:
    """Every record with an id in the event file and its backups, oldest first."""
    path = Path(events_output)
    files = [path.with_name(f"{path.name}.{i}") for i in range(backups, 0, -1)] + [path]
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except (FileNotFoundError, IsADirectoryError):
            continue
        except OSError as exc:
            log.warning("mqtt: cannot read %s to resume delivery (%s)", file, exc.strerror)
            continue
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by a power cut
            if isinstance(record, dict) and isinstance(record.get("id"), str):
                yield record


def read_ack(path: Path) -> tuple[bool, str | None]:
    """(the file exists, the last acknowledged id or None)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False, None
    except (OSError, ValueError):
        log.warning("mqtt: %s is unreadable; events in the event file will be sent again", path)
        return True, None
    acked = data.get("acked") if isinstance(data, dict) else None
    return True, acked if isinstance(acked, str) else None


def write_ack(path: Path, acked: str | None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"acked": acked}) + "\n", encoding="utf-8")
    os.replace(tmp, path)  # atomic: a power cut leaves the old or the new id, never half


def unsent(records: list[dict[str, object]], acked: str | None) -> list[dict[str, object]]:
    """The records after the acknowledged one; all of them when it is not found (rotated away)."""
    if acked is not None:
        for i in range(len(records) - 1, -1, -1):
            if records[i]["id"] == acked:
                return records[i + 1 :]
    return records


class Outbox:
    """Pending events (not yet sent) and in-flight ones (sent, not yet acknowledged), in order."""

    def __init__(self, capacity: int, ack_path: Path | None = None, acked: str | None = None) -> None:
        self.capacity = capacity
        self.ack_path = ack_path
        # the last id such that it and everything before it is done with: acknowledged or dropped
        self.acked = acked
        self.dropped = 0
        self._next = 0
        self._last_dropped: Entry | None = None  # dropped behind events still in flight
        self._pending: deque[Entry] = deque()
        self._sent: deque[Entry] = deque()
        self._lock = threading.Lock()
        self._saved = acked
        self._warned_drops = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending) + len(self._sent)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return sum(not e.acked for e in self._sent)

    def put(self, record: dict[str, object]) -> None:
        with self._lock:
            self._pending.append(Entry(str(record["id"]), record, self._next))
            self._next += 1
            # bounded: the oldest unsent events make room (counted as lost), never the door waits
            while self._pending and len(self._pending) + len(self._sent) > self.capacity:
                gone = self._pending.popleft()
                self.dropped += 1
                if self._sent:
                    self._last_dropped = gone  # done with once what is in flight is
                else:
                    self.acked = gone.id  # a restart must not bring it back

    def take(self) -> Entry | None:
        """The oldest pending event, now in flight."""
        with self._lock:
            if not self._pending:
                return None
            entry = self._pending.popleft()
            self._sent.append(entry)
            return entry

    def ack(self, entry: Entry) -> None:
        with self._lock:
            entry.acked = True
            while self._sent and self._sent[0].acked:
                done = self._sent.popleft()
                self.acked = done.id
                if self._last_dropped is not None and self._last_dropped.n < done.n:
                    self._last_dropped = None
            if not self._sent and self._last_dropped is not None:
                self.acked = self._last_dropped.id
                self._last_dropped = None

    def requeue(self) -> int:
        """After a disconnection: unacknowledged events go back to the front, in order."""
        with self._lock:
            back = [e for e in self._sent if not e.acked]
            self._sent.clear()
            self._pending.extendleft(reversed(back))
            return len(back)

    def save(self) -> None:
        """Write the last acknowledged id when it moved (the publisher calls this now and then)."""
        with self._lock:
            acked = self.acked
        if self.ack_path is None or acked == self._saved:
            return
        try:
            write_ack(self.ack_path, acked)
            self._saved = acked
        except OSError as exc:
            with contextlib.suppress(Exception):
                log.warning("mqtt: cannot write %s (%s)", self.ack_path, exc.strerror)

    def new_drops(self) -> int:
        """Events dropped since the last call (for a warning now and then)."""
        with self._lock:
            n = self.dropped - self._warned_drops
            self._warned_drops = self.dropped
            return n
