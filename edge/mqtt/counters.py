"""Per-class counts of the events since local midnight (what a facility reports per day)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, datetime

from edge.classes import MASK, MASKNET_CLASSES, SUBTYPES


def _local_date(record: dict[str, object]) -> date | None:
    try:
        return datetime.fromisoformat(str(record["timestamp"])).astimezone().date()
    except (KeyError, ValueError):
        return None


class DailyCounts:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.day = self._today()
        self.counts = dict.fromkeys(MASKNET_CLASSES, 0)
        self.sub_types = dict.fromkeys(SUBTYPES, 0)

    def _today(self) -> date:
        return datetime.fromtimestamp(self.clock()).date()

    def _roll(self) -> None:
        today = self._today()
        if today != self.day:
            self.day = today
            self.counts = dict.fromkeys(MASKNET_CLASSES, 0)
            self.sub_types = dict.fromkeys(SUBTYPES, 0)

    def add(self, record: dict[str, object]) -> None:
        """Count an event if it happened today (local time)."""
        self._roll()
        if _local_date(record) != self.day:
            return
        class_id = record.get("class_id")
        if class_id in self.counts:
            self.counts[class_id] += 1  # type: ignore[index]
        sub = record.get("sub_type")
        if sub in self.sub_types:
            self.sub_types[sub] += 1  # type: ignore[index]

    def snapshot(self) -> dict[str, object]:
        self._roll()
        total = sum(self.counts.values())
        return {
            "date": self.day.isoformat(),
            "counts": dict(self.counts),
            "sub_types": dict(self.sub_types),
            "total": total,
            "mask_share": round(self.counts[MASK] / total, 4) if total else None,
        }
