"""``masknet watch``: every door on the broker in one live table (or, with --json, one stream).

It subscribes to what the doors publish (``masknet/<door>/...`` unless configured otherwise) and
reads nothing else: availability, the retained state (the light now), the last event and the
counters since local midnight. Broker settings come from the ``[mqtt]`` section of the same
config file the doors use (``--config``), with ``--host`` / ``--port`` on top.
"""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from types import FrameType
from typing import Any, TextIO

import paho.mqtt.client as mqtt  # here, so that a missing paho is the CLI's one-line hint

from edge.config import MqttConfig, load_config, secret_warnings
from edge.errors import BrokerError
from edge.mqtt.client import (
    describe_error,
    describe_refusal,
    make_client,
    resolve_password,
    tls_context,
)
from edge.mqtt.topics import AVAILABILITY, COUNTERS, EVENTS, KINDS, LAST, STATE

REFRESH_S = 0.5  # the table is redrawn at most this often


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML config file; its [mqtt] section says where the broker is")
    parser.add_argument("--host", help="broker host (default: mqtt.host)")
    parser.add_argument("--port", type=int, help="broker port (default: mqtt.port)")
    parser.add_argument("--topic", default="masknet/#", help="what to subscribe to (default: masknet/#)")
    parser.add_argument("--json", action="store_true", help="print every message as one JSON line instead of the table")


@dataclass
class Door:
    name: str
    online: str = "?"
    state: dict[str, Any] = field(default_factory=dict)
    last: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, Any] = field(default_factory=dict)


def parse(topic: str, payload: bytes) -> tuple[str, str, Any] | None:
    """(prefix, kind, data) of a door's message; None for anything else on the broker."""
    prefix, _, kind = topic.rpartition("/")
    if not prefix or kind not in KINDS:
        return None
    text = payload.decode("utf-8", "replace")
    if kind == AVAILABILITY:
        return prefix, kind, text
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return (prefix, kind, data) if isinstance(data, dict) else None


def _local_time(iso: str | None) -> str:
    if not iso:
        return ""
    try:
        when = datetime.fromisoformat(iso).astimezone()
    except ValueError:
        return iso
    return when.strftime("%H:%M:%S") if when.date() == datetime.now().date() else when.strftime("%Y-%m-%d %H:%M")


def _verdict(d: dict[str, Any]) -> str:
    if not d:
        return "-"
    return f"{d.get('class_id')}/{d['sub_type']}" if d.get("sub_type") else str(d.get("class_id") or "-")


def table(doors: dict[str, Door]) -> str:
    header = ("door", "status", "light", "people", "last verdict", "at", "mask", "wrong", "none", "mask %")
    rows = [header]
    today = date.today().isoformat()
    for door in sorted(doors.values(), key=lambda d: d.name):
        # a door silent since before midnight has no counts for today
        fresh = door.counters.get("date") == today
        counts = door.counters.get("counts", {}) if fresh else {}
        share = door.counters.get("mask_share") if fresh else None
        light = door.state.get("light", "-")
        if door.state.get("sub_type"):
            light = f"{light}/{door.state['sub_type']}"
        rows.append((
            door.name, door.online, light, str(door.state.get("people", "-")),
            _verdict(door.last), _local_time(door.last.get("timestamp")),
            str(counts.get("mask", "-")), str(counts.get("mask_incorrect", "-")),
            str(counts.get("no_mask", "-")), "-" if share is None else f"{100 * share:.0f}%",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


class Watch:
    def __init__(self, out: TextIO, as_json: bool) -> None:
        self.out = out
        self.as_json = as_json
        self.doors: dict[str, Door] = {}
        self.tty = out.isatty()
        self.broker = "connecting"
        self._dirty = True
        self._drawn = 0.0

    def message(self, topic: str, payload: bytes, retained: bool) -> None:
        parsed = parse(topic, payload)
        if parsed is None:
            return
        prefix, kind, data = parsed
        door = self.doors.setdefault(prefix, Door(prefix.rpartition("/")[2]))
        if isinstance(data, dict) and isinstance(data.get("door"), str):
            door.name = data["door"]
        if kind == AVAILABILITY:
            door.online = data
        elif kind == STATE:
            door.state = data
        elif kind in (LAST, EVENTS):
            if data.get("timestamp", "") >= door.last.get("timestamp", ""):
                door.last = data
        elif kind == COUNTERS:
            door.counters = data
        if self.as_json:
            line = {"door": door.name, "kind": kind, "topic": topic, "retained": retained, "data": data}
            self.out.write(json.dumps(line, separators=(",", ":")) + "\n")
            self.out.flush()
        self._dirty = True

    def draw(self, force: bool = False) -> None:
        if self.as_json or not (self._dirty or force):
            return
        now = time.monotonic()
        if not force and now - self._drawn < REFRESH_S:
            return
        self._drawn = now
        self._dirty = False
        text = table(self.doors) if self.doors else "(no door has published yet)"
        stamp = datetime.now().strftime("%H:%M:%S")
        body = f"masknet watch  {stamp}  broker {self.broker}\n\n{text}\n"
        # in place on a terminal; one table after the other when piped
        self.out.write(("\x1b[H\x1b[2J" + body) if self.tty else body + "\n")
        self.out.flush()


def _connect(cfg: MqttConfig, watch: Watch, topic: str) -> Any:
    client = make_client(cfg, f"masknet-watch-{secrets.token_hex(4)}", resolve_password(cfg), tls_context(cfg))
    answer: dict[str, Any] = {}

    def on_connect(c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        answer["rc"] = rc
        if not rc.is_failure:
            c.subscribe(topic, qos=1)
            watch.broker = f"{cfg.host}:{cfg.port}"

    def on_disconnect(_c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        watch.broker = f"{cfg.host}:{cfg.port} lost ({rc}), reconnecting"
        watch.draw(force=True)

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_message = lambda _c, _u, msg: watch.message(msg.topic, msg.payload, bool(msg.retain))
    client.reconnect_delay_set(0.5, 10)
    try:
        client.connect(cfg.host, cfg.port, cfg.keepalive)
    except Exception as exc:
        raise BrokerError(describe_error(cfg, exc)) from None
    deadline = time.monotonic() + 10.0
    while "rc" not in answer and time.monotonic() < deadline:
        if client.loop(timeout=0.1) != mqtt.MQTT_ERR_SUCCESS:
            break
    rc = answer.get("rc")
    if rc is None:
        raise BrokerError(f"the broker at {cfg.host}:{cfg.port} did not answer CONNECT")
    if rc.is_failure:
        raise BrokerError(describe_refusal(cfg, rc))
    return client


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {"mqtt.host": args.host, "mqtt.port": args.port}
    config = load_config(args.config, {k: v for k, v in overrides.items() if v is not None})
    for line in secret_warnings(config, args.config):
        print(f"masknet watch: warning: {line}", file=sys.stderr)
    cfg = config.mqtt
    watch = Watch(sys.stdout, args.json)
    client = _connect(cfg, watch, args.topic)
    stopped: list[int] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        stopped.append(signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        while not stopped:
            # loop_forever-like, with the table redrawn between network calls; paho reconnects
            rc = client.loop(timeout=0.2)
            if rc != 0 and not stopped:
                time.sleep(0.5)  # broker away: wait, then try again (the table says so)
                try:
                    client.reconnect()
                except Exception as exc:
                    watch.broker = f"{cfg.host}:{cfg.port} unreachable ({exc.__class__.__name__}), retrying"
            watch.draw()
    finally:
        signal.signal(signal.SIGTERM, previous)
        client.on_disconnect = None
        client.disconnect()
    return 0
