"""The topics of one door, under its prefix (``masknet/<door>`` unless configured)."""

from __future__ import annotations

from dataclasses import dataclass

# the last level of each topic a door publishes; `masknet watch` reads them back by this name
EVENTS, STATE, LAST, COUNTERS, AVAILABILITY = "events", "state", "last", "counters", "availability"
KINDS: tuple[str, ...] = (EVENTS, STATE, LAST, COUNTERS, AVAILABILITY)


@dataclass(frozen=True)
class Topics:
    door: str
    prefix: str

    @property
    def events(self) -> str:  # every committed verdict, QoS 1, not retained
        return f"{self.prefix}/{EVENTS}"

    @property
    def state(self) -> str:  # retained: the light now, people in view
        return f"{self.prefix}/{STATE}"

    @property
    def last(self) -> str:  # retained: the latest event
        return f"{self.prefix}/{LAST}"

    @property
    def counters(self) -> str:  # retained: per-class counts since local midnight, health
        return f"{self.prefix}/{COUNTERS}"

    @property
    def availability(self) -> str:  # retained: "online", or "offline" (also the last will)
        return f"{self.prefix}/{AVAILABILITY}"
