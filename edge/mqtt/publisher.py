"""The door's MQTT publisher: one background thread owns the connection; the frame loop only
hands it records and state changes (a lock and an append, never a network call).

Per connection the thread makes a fresh paho client (clean session), so that the outbox is the
only queue of events: on a disconnection the events sent but not acknowledged go back to the
front of the outbox and are sent again, in order, on the next connection (at least once; the
event id lets a receiver drop the duplicate). Retained topics (availability, discovery, state,
last event, counters) are republished on every connection. A broker that is down, unreachable
or refuses us is one warning line per kind of failure; the door keeps running offline and the
thread retries with a doubling back-off.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from edge.config import MqttConfig
from edge.errors import ConfigError
from edge.mqtt.client import describe_error, describe_refusal, make_client
from edge.mqtt.counters import DailyCounts
from edge.mqtt.discovery import discovery_configs
from edge.mqtt.outbox import Outbox, ack_path_for, read_ack, read_event_records, unsent, write_ack
from edge.mqtt.topics import Topics

log = logging.getLogger("edge.mqtt")

WINDOW = 32  # events in flight (sent, not yet acknowledged) at once
TICK_S = 0.05  # the thread's poll period: how late at most an event leaves for the broker
FLUSH_S = 3.0  # on stop, how long undelivered events may still be sent before giving up
SAVE_EVERY_S = 0.5  # the acknowledged id goes to disk at most this often (and at the end)
COUNTS_MIN_S = 1.0  # counters follow the events at most this often


def _json(payload: object) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Publisher:
    def __init__(
        self,
        cfg: MqttConfig,
        topics: Topics,
        events_output: str,
        events_backups: int,
        health: Callable[[], dict[str, int]],
        password: str | None,
        tls: ssl.SSLContext | None,
    ) -> None:
        self.cfg = cfg
        self.topics = topics
        self.door = topics.door
        self.client_id = cfg.client_id or f"masknet-{topics.door}"
        self.health = health
        self._password = password
        self._tls = tls
        self.counts = DailyCounts()
        self.outbox = self._resume(events_output, events_backups)
        self._lock = threading.Lock()
        self._retained: dict[str, bytes] = {}  # the latest of each retained topic
        self._live: deque[tuple[str, bytes]] = deque(maxlen=1000)  # in order, while connected
        self._state: tuple[str, str | None, int] | None = None
        self._counts_changed = True
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._attempted = threading.Event()
        self._last_problem: str | None = None
        self._thread = threading.Thread(target=self._run, name="masknet-mqtt", daemon=True)

    # --- start-up: what is left to send from the event file ------------------------------------

    def _resume(self, events_output: str, backups: int) -> Outbox:
        ack_path = ack_path_for(events_output)
        if ack_path is None:
            log.warning(
                "mqtt: events.output is stdout, so events not yet delivered are lost if the door "
                "restarts; set events.output to a file for delivery across restarts"
            )
            return Outbox(self.cfg.backlog)
        records = list(read_event_records(events_output, backups))
        for record in records:
            self.counts.add(record)
        exists, acked = read_ack(ack_path)
        if exists:
            backlog = unsent(records, acked)
        else:
            # MQTT newly switched on: the history stays local, delivery starts with the next event
            backlog = []
            acked = str(records[-1]["id"]) if records else None
            try:
                write_ack(ack_path, acked)
            except OSError as exc:
                raise ConfigError(f"mqtt: cannot write {ack_path} ({exc.strerror})") from None
        outbox = Outbox(self.cfg.backlog, ack_path, acked)
        for record in backlog:
            outbox.put(self._payload_record(record))
        if backlog:
            log.info("mqtt: %d event(s) from the event file still to deliver", len(backlog))
        return outbox

    def _payload_record(self, record: dict[str, object]) -> dict[str, object]:
        # privacy: a saved crop's path never leaves the door, whatever events.save_crops says
        out = {k: v for k, v in record.items() if k != "crop"}
        out["door"] = self.door
        return out

    # --- called from the frame loop: cheap, never blocks on the network -----------------------

    def event(self, record: dict[str, object]) -> None:
        """EventLog listener: queue the event, count it, make it the retained last event."""
        payload = self._payload_record(record)
        self.outbox.put(payload)
        with self._lock:
            self.counts.add(record)
            self._counts_changed = True
            self._set_retained(self.topics.last, _json(payload))

    def state(self, light: str, sub_type: str | None, people: int) -> None:
        """The light now and the people in view; published (retained) when it changes."""
        key = (light, sub_type, people)
        if key == self._state:
            return
        self._state = key
        payload = {"door": self.door, "light": light, "sub_type": sub_type, "people": people, "since": _now_iso()}
        with self._lock:
            self._set_retained(self.topics.state, _json(payload))

    def _set_retained(self, topic: str, payload: bytes) -> None:
        self._retained[topic] = payload
        if self.connected.is_set():
            self._live.append((topic, payload))

    # --- life cycle -------------------------------------------------------------------------------

    def start(self, wait_s: float = 6.0) -> None:
        """Start the thread; wait (bounded) for its first connection attempt, so that a broker
        that is up is connected before the first frame."""
        self._thread.start()
        self._attempted.wait(wait_s)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(FLUSH_S + 3.0)
        self.outbox.save()
        left = len(self.outbox)
        if left or self.outbox.dropped:
            log.warning(
                "mqtt: %d event(s) not delivered yet (sent after the next start), %d dropped "
                "(backlog full)", left, self.outbox.dropped,
            )

    # --- the thread -------------------------------------------------------------------------------

    def _problem(self, line: str) -> None:
        # one line per kind of failure, not one per retry
        if line != self._last_problem:
            self._last_problem = line
            log.warning("mqtt: %s; the door runs on offline, events are kept for later", line)

    def _warn_drops(self) -> None:
        dropped = self.outbox.new_drops()
        if dropped:
            log.warning(
                "mqtt: backlog full (mqtt.backlog = %d): the %d oldest undelivered event(s) dropped",
                self.cfg.backlog, dropped,
            )

    def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                client = self._connect()
            except Exception as exc:  # a paho surprise must not end delivery for good
                self._problem(describe_error(self.cfg, exc))
                client = None
            self._attempted.set()
            if client is None:
                self._warn_drops()
                self._stop.wait(delay)
                delay = min(delay * 2.0, self.cfg.reconnect_max_s)
                continue
            delay = 0.5
            try:
                self._session(client)
            except Exception as exc:
                self._problem(f"connection to {self.cfg.host}:{self.cfg.port} failed ({exc})")
            finally:
                self.connected.clear()
                self.outbox.requeue()
                self.outbox.save()

    def _connect(self) -> Any:
        import paho.mqtt.client as mqtt

        client = make_client(
            self.cfg, self.client_id, self._password, self._tls,
            will=(self.topics.availability, "offline"),
        )
        answer: dict[str, Any] = {}
        client.on_connect = lambda _c, _u, _f, rc, _p: answer.setdefault("rc", rc)
        try:
            client.connect(self.cfg.host, self.cfg.port, self.cfg.keepalive)
        except Exception as exc:
            self._problem(describe_error(self.cfg, exc))
            return None
        deadline = time.monotonic() + 10.0
        while "rc" not in answer and time.monotonic() < deadline and not self._stop.is_set():
            if client.loop(timeout=0.1) != mqtt.MQTT_ERR_SUCCESS:
                break
        rc = answer.get("rc")
        # stopped while waiting for the answer: nothing to report
        if (rc is not None or not self._stop.is_set()) and (rc is None or rc.is_failure):
            self._problem(
                describe_refusal(self.cfg, rc) if rc is not None
                else f"the broker at {self.cfg.host}:{self.cfg.port} did not answer CONNECT"
            )
        if rc is None or rc.is_failure:
            try:
                client.disconnect()
                client.loop(timeout=0.01)
            except Exception:
                pass
            return None
        return client

    def _session(self, client: Any) -> None:
        import paho.mqtt.client as mqtt

        qos = self.cfg.qos
        acks: deque[int] = deque()
        lost: dict[str, Any] = {}
        client.on_publish = lambda _c, _u, mid, _rc, _p: acks.append(mid)
        client.on_disconnect = lambda _c, _u, _f, rc, _p: lost.setdefault("rc", rc)
        in_flight: dict[int, Any] = {}

        with self._lock:
            self._live.clear()
            retained = dict(self._retained)
            self.connected.set()
        client.publish(self.topics.availability, b"online", qos, retain=True)
        if self.cfg.discovery:
            for topic, config in discovery_configs(self.topics, self.cfg.discovery_prefix).items():
                client.publish(topic, _json(config), qos, retain=True)
        for topic, payload in retained.items():
            client.publish(topic, payload, qos, retain=True)
        self._last_problem = None
        log.info(
            "mqtt: connected to %s:%d as door '%s' (topics %s/#, %d event(s) to deliver)",
            self.cfg.host, self.cfg.port, self.door, self.topics.prefix, len(self.outbox),
        )

        next_counts = 0.0
        next_health = 0.0
        next_save = 0.0
        health_prev = (time.monotonic(), self.health().get("frames", 0))
        fps = 0.0
        stop_at: float | None = None
        while True:
            if client.loop(timeout=TICK_S) != mqtt.MQTT_ERR_SUCCESS or "rc" in lost:
                self._problem(
                    f"lost the connection to {self.cfg.host}:{self.cfg.port} "
                    f"({lost.get('rc', 'connection lost')}), {len(self.outbox)} event(s) waiting"
                )
                return
            while acks:
                entry = in_flight.pop(acks.popleft(), None)
                if entry is not None:
                    self.outbox.ack(entry)
            with self._lock:
                live = list(self._live)
                self._live.clear()
            for topic, payload in live:
                client.publish(topic, payload, qos, retain=True)
            now = time.monotonic()
            if self._stop.is_set():
                if stop_at is None:
                    stop_at = now + FLUSH_S
                if len(self.outbox) == 0 or now >= stop_at:
                    self._goodbye(client, fps)
                    return
            while len(in_flight) < WINDOW:
                entry = self.outbox.take()
                if entry is None:
                    break
                info = client.publish(self.topics.events, _json(entry.record), qos)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    return  # the connection went; the outbox takes the event back
                in_flight[info.mid] = entry
            if now >= next_health:
                frames = self.health().get("frames", 0)
                dt = now - health_prev[0]
                if dt > 0:
                    fps = (frames - health_prev[1]) / dt
                health_prev = (now, frames)
                next_health = now + self.cfg.counters_interval_s
                next_counts = 0.0  # publish now
                self._warn_drops()
            if now >= next_counts and (self._counts_changed or next_counts == 0.0):
                client.publish(self.topics.counters, self._counters(fps), qos, retain=True)
                next_counts = now + COUNTS_MIN_S
            if now >= next_save:
                self.outbox.save()
                next_save = now + SAVE_EVERY_S

    def _counters(self, fps: float) -> bytes:
        health = self.health()
        with self._lock:
            self._counts_changed = False
            payload: dict[str, object] = {"door": self.door, **self.counts.snapshot()}
        payload["health"] = {
            "fps": round(fps, 2),
            "frames": health.get("frames", 0),
            "camera_reopens": health.get("camera_reopens", 0),
            "events_lost": health.get("events_lost", 0) + self.outbox.dropped,
            "backlog": len(self.outbox),
        }
        payload["timestamp"] = _now_iso()
        return _json(payload)

    def _goodbye(self, client: Any, fps: float) -> None:
        """A clean stop: lights off, the final counts, then offline (the will is for a door that dies)."""
        self.state("idle", None, 0)  # the indicators are switched off as the door stops
        with self._lock:
            state = self._retained[self.topics.state]
        client.publish(self.topics.state, state, self.cfg.qos, retain=True)
        client.publish(self.topics.counters, self._counters(fps), self.cfg.qos, retain=True)
        info = client.publish(self.topics.availability, b"offline", self.cfg.qos, retain=True)
        deadline = time.monotonic() + 1.0
        while not info.is_published() and time.monotonic() < deadline:
            if client.loop(timeout=TICK_S) != 0:
                break
        client.disconnect()
