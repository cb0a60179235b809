"""The `masknet run` configuration: one TOML file, validated in full before anything starts.

The documented defaults live in ``edge/default_config.toml``; a user file only lists the keys it
changes. Every key of the defaults has a rule in ``_RULES`` (a test keeps the two in step), so a
misspelt key or a value of the wrong type is refused at start with one line naming the key,
instead of surfacing hours later at the door.
"""

from __future__ import annotations

import copy
import math
import re
import stat
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edge.classes import MASKNET_CLASSES, SUBTYPES
from edge.errors import ConfigError
from edge.toml_text import dump_toml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 on older Pi OS images
    import tomli as tomllib

DEFAULT_CONFIG_PATH = Path(__file__).with_name("default_config.toml")


def _positive(v: Any) -> bool:
    return v > 0


def _non_negative(v: Any) -> bool:
    return v >= 0


def _unit(v: Any) -> bool:
    return 0.0 <= v <= 1.0


def _bcm_pin(v: Any) -> bool:
    return 0 <= v <= 27


def _durations(v: Any) -> bool:
    return all(isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in v)


def _blink(v: Any) -> bool:
    return _durations(v) and len(v) in (0, 2)


def _fractions_box(v: Any) -> bool:  # [x0, y0, x1, y1] in [0, 1], x0 < x1, y0 < y1
    ok = len(v) == 4 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
    return ok and all(0 <= x <= 1 for x in v) and v[0] < v[2] and v[1] < v[3]


def _door_name(v: Any) -> bool:
    return v == "" or re.fullmatch(r"[A-Za-z0-9_-]{1,64}", v) is not None


def _topic_prefix(v: Any) -> bool:
    return not any(c in v for c in "+#\0") and not v.endswith("/") and not v.startswith("/")


def _one_of(*choices: str) -> Callable[[Any], bool]:
    return lambda v: v in choices


# Settings whose default is a string that may also be set to true / false.
_STR_OR_BOOL = frozenset({"classifier.align"})

# key -> (check, what a valid value is). Types come from the default value itself.
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "camera.source": (lambda v: v.strip() != "", "a non-empty string"),
    "camera.width": (_positive, "a positive integer"),
    "camera.height": (_positive, "a positive integer"),
    "camera.lores_width": (_positive, "a positive integer"),
    "camera.lores_height": (_positive, "a positive integer"),
    "camera.fps": (_positive, "a positive integer"),
    "camera.loop": (lambda v: True, "true or false"),
    "camera.pace": (lambda v: True, "true or false"),
    "camera.max_failures": (_positive, "a positive integer"),
    "camera.reopen_backoff_s": (_non_negative, "seconds >= 0"),
    "camera.reopen_backoff_max_s": (_non_negative, "seconds >= 0"),
    "camera.open_timeout_s": (_positive, "seconds > 0"),
    "detector.name": (lambda v: v.strip() != "", "a detector name"),
    "detector.model": (lambda v: True, "a .tflite path or \"\""),
    "detector.score_threshold": (_unit, "between 0 and 1"),
    "detector.nms_iou": (_unit, "between 0 and 1"),
    "detector.min_face_size": (_non_negative, "pixels >= 0"),
    **{f"detector.{k}": (_fractions_box, "[x0, y0, x1, y1], fractions of the frame from 0 to 1 with x0 < x1 and y0 < y1")
       for k in ("roi", "far_region")},
    "detector.far_tile": (_unit, "between 0 (no far pass) and 1 (the frame's height)"),
    "detector.far_every": (_positive, "a positive integer"),
    "detector.verify_threshold": (lambda v: 0.0 <= v < 1.0, "0 (no re-look) or a score below 1"),
    "detector.relook": (_one_of("blazeface", "mesh"), "\"blazeface\" or \"mesh\""),
    "classifier.models_dir": (lambda v: True, "a folder path or \"\""),
    "classifier.align": (lambda v: v == "auto" or isinstance(v, bool), "\"auto\", true or false"),
    "classifier.max_faces_per_frame": (_positive, "a positive integer"),
    "runtime.threads": (lambda v: 1 <= v <= 64, "between 1 and 64"),
    "tracker.iou_threshold": (lambda v: 0.0 < v <= 1.0, "above 0 and at most 1"),
    "tracker.stable_frames": (_positive, "a positive integer"),
    "tracker.stable_seconds": (_non_negative, "seconds >= 0"),
    "tracker.change_frames": (_positive, "a positive integer"),
    "tracker.min_score": (_unit, "between 0 and 1"),
    "tracker.commit_score": (_unit, "between 0 and 1"),
    "tracker.min_face_px": (_non_negative, "pixels >= 0"),
    "tracker.expire_frames": (_positive, "a positive integer"),
    "tracker.expire_seconds": (_positive, "seconds > 0"),
    "indicators.pins": (_one_of("auto", "gpio", "mock"), "\"auto\", \"gpio\" or \"mock\""),
    "indicators.green_pin": (_bcm_pin, "a BCM pin number 0-27"),
    "indicators.amber_pin": (_bcm_pin, "a BCM pin number 0-27"),
    "indicators.red_pin": (_bcm_pin, "a BCM pin number 0-27"),
    "indicators.buzzer_pin": (_bcm_pin, "a BCM pin number 0-27"),
    "indicators.active_high": (lambda v: True, "true or false"),
    "indicators.buzzer_enabled": (lambda v: True, "true or false"),
    "indicators.hold_seconds": (_non_negative, "seconds >= 0"),
    **{
        f"indicators.amber_blink.{s}": (_blink, "[] or [on_seconds, off_seconds], both > 0")
        for s in SUBTYPES
    },
    **{
        f"indicators.buzzer.{c}": (_durations, "a list of on/off seconds > 0, [] for silent")
        for c in MASKNET_CLASSES
    },
    "events.output": (lambda v: v.strip() != "", "\"-\" for stdout or a file path"),
    "events.max_bytes": (lambda v: v >= 1024, "at least 1024 bytes"),
    "events.backups": (_non_negative, "an integer >= 0"),
    "events.save_crops": (lambda v: True, "true or false"),
    "events.crops_dir": (lambda v: v.strip() != "", "a folder path"),
    "events.max_crops": (_positive, "a positive integer"),
    "preview.enabled": (lambda v: True, "true or false"),
    "preview.mode": (_one_of("auto", "window", "folder"), "\"auto\", \"window\" or \"folder\""),
    "preview.folder": (lambda v: v.strip() != "", "a folder path"),
    "preview.every_n": (_positive, "a positive integer"),
    "mqtt.enabled": (lambda v: True, "true or false"),
    "mqtt.host": (lambda v: v.strip() != "", "a host name or address"),
    "mqtt.port": (lambda v: 1 <= v <= 65535, "a port number 1-65535"),
    "mqtt.door": (_door_name, "letters, digits, '_' or '-' (or \"\" for the host name)"),
    "mqtt.client_id": (lambda v: True, "a string (\"\" = masknet-<door>)"),
    "mqtt.username": (lambda v: True, "a string"),
    "mqtt.password": (lambda v: True, "a string"),
    "mqtt.password_env": (lambda v: True, "an environment variable name or \"\""),
    "mqtt.password_file": (lambda v: True, "a file path or \"\""),
    "mqtt.tls": (lambda v: True, "true or false"),
    "mqtt.ca_file": (lambda v: True, "a file path or \"\""),
    "mqtt.certfile": (lambda v: True, "a file path or \"\""),
    "mqtt.keyfile": (lambda v: True, "a file path or \"\""),
    "mqtt.qos": (lambda v: v in (1, 2), "1 or 2"),
    "mqtt.keepalive": (lambda v: 5 <= v <= 3600, "seconds between 5 and 3600"),
    "mqtt.topic_prefix": (_topic_prefix, "a topic without '+', '#' or a trailing '/' (or \"\")"),
    "mqtt.discovery": (lambda v: True, "true or false"),
    "mqtt.discovery_prefix": (lambda v: _topic_prefix(v) and v != "", "a topic without '+', '#' or a trailing '/'"),
    "mqtt.backlog": (_positive, "a positive integer"),
    "mqtt.counters_interval_s": (lambda v: v >= 1.0, "seconds >= 1"),
    "mqtt.reconnect_max_s": (lambda v: v >= 0.5, "seconds >= 0.5"),
}


@dataclass(frozen=True)
class CameraConfig:
    source: str
    width: int
    height: int
    lores_width: int
    lores_height: int
    fps: int
    loop: bool
    pace: bool
    max_failures: int
    reopen_backoff_s: float
    reopen_backoff_max_s: float
    open_timeout_s: float


@dataclass(frozen=True)
class DetectorConfig:
    name: str
    model: str
    score_threshold: float
    nms_iou: float
    min_face_size: float
    roi: tuple[float, float, float, float]
    far_region: tuple[float, float, float, float]
    far_tile: float
    far_every: int
    verify_threshold: float
    relook: str  # "blazeface" (the detector again, in context) or "mesh" (face-mesh presence)


@dataclass(frozen=True)
class ClassifierConfig:
    models_dir: str
    align: bool | str  # "auto": the crop the manifest records
    max_faces_per_frame: int


@dataclass(frozen=True)
class RuntimeConfig:
    threads: int


@dataclass(frozen=True)
class TrackerConfig:
    iou_threshold: float
    stable_frames: int
    stable_seconds: float
    change_frames: int
    min_score: float
    commit_score: float
    min_face_px: float
    expire_frames: int
    expire_seconds: float


@dataclass(frozen=True)
class IndicatorsConfig:
    pins: str
    green_pin: int
    amber_pin: int
    red_pin: int
    buzzer_pin: int
    active_high: bool
    buzzer_enabled: bool
    hold_seconds: float
    amber_blink: Mapping[str, tuple[float, ...]]
    buzzer: Mapping[str, tuple[float, ...]]


@dataclass(frozen=True)
class EventsConfig:
    output: str
    max_bytes: int
    backups: int
    save_crops: bool
    crops_dir: str
    max_crops: int


@dataclass(frozen=True)
class PreviewConfig:
    enabled: bool
    mode: str
    folder: str
    every_n: int


@dataclass(frozen=True)
class MqttConfig:
    enabled: bool
    host: str
    port: int
    door: str
    client_id: str
    username: str
    password: str
    password_env: str
    password_file: str
    tls: bool
    ca_file: str
    certfile: str
    keyfile: str
    qos: int
    keepalive: int
    topic_prefix: str
    discovery: bool
    discovery_prefix: str
    backlog: int
    counters_interval_s: float
    reconnect_max_s: float

    def __repr__(self) -> str:  # never show the password in a log or traceback
        return f"MqttConfig(host={self.host!r}, port={self.port}, door={self.door!r}, enabled={self.enabled})"


# keys whose values --print-config (and anything else that shows the config) masks
SECRET_KEYS: tuple[str, ...] = ("mqtt.password",)
MASK_TEXT = "********"


@dataclass(frozen=True)
class Config:
    camera: CameraConfig
    detector: DetectorConfig
    classifier: ClassifierConfig
    runtime: RuntimeConfig
    tracker: TrackerConfig
    indicators: IndicatorsConfig
    events: EventsConfig
    preview: PreviewConfig
    mqtt: MqttConfig
    # the merged key/value tree, kept for --print-config (not in repr: it holds secrets)
    raw: Mapping[str, Any] = field(repr=False)

    def to_toml(self) -> str:
        """The effective configuration as TOML, secrets masked."""
        tree = copy.deepcopy(dict(self.raw))
        for key in SECRET_KEYS:
            table, name = key.split(".")
            if tree[table][name]:
                tree[table][name] = MASK_TEXT
        return dump_toml(tree)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, expected a TOML config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        # TOML is UTF-8; a Latin-1 accent in a comment is enough to get here
        bad = exc.object[exc.start : exc.start + 1].hex()
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{bad} at offset {exc.start}, line {line}); "
            "save the file as UTF-8"
        ) from None


def default_tree() -> dict[str, Any]:
    """The documented defaults, as a nested dict."""
    return _read_toml(DEFAULT_CONFIG_PATH)


def _type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "a boolean (true/false)"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a table"
    return type(v).__name__


def _coerce(where: str, key: str, default: Any, value: Any) -> Any:
    """The value in the default's type, or ConfigError naming the key."""
    ok: bool
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)
            ok = math.isfinite(value)
    elif isinstance(default, str):
        # classifier.align: "auto" or a boolean
        ok = isinstance(value, str) or (key in _STR_OR_BOOL and isinstance(value, bool))
    elif isinstance(default, list):
        ok = isinstance(value, list)
    else:  # pragma: no cover - the defaults only hold the types above
        ok = False
    if not ok:
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}: '{key}' must be a finite number, got {value!r}")
        raise ConfigError(
            f"{where}: '{key}' must be {_type_name(default)}, got {_type_name(value)} {value!r}"
        )
    check, wanted = _RULES[key]
    if not check(value):
        raise ConfigError(f"{where}: '{key}' must be {wanted}, got {value!r}")
    return value


def _merge(where: str, base: dict[str, Any], user: Mapping[str, Any], prefix: str = "") -> None:
    for name, value in user.items():
        key = f"{prefix}{name}"
        if name not in base:
            known = ", ".join(sorted(base))
            raise ConfigError(f"{where}: unknown key '{key}' (known here: {known})")
        default = base[name]
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(
                    f"{where}: '{key}' must be a table ([{key}]), got {_type_name(value)} {value!r}"
                )
            _merge(where, default, value, prefix=f"{key}.")
        else:
            base[name] = _coerce(where, key, default, value)


def _section(cls: type, tree: Mapping[str, Any]) -> Any:
    values = {}
    for f in fields(cls):
        v = tree[f.name]
        if isinstance(v, dict):
            v = {k: tuple(float(x) for x in lst) for k, lst in v.items()}
        elif isinstance(v, list):
            v = tuple(v)
        values[f.name] = v
    return cls(**values)


def build_config(tree: Mapping[str, Any]) -> Config:
    """Typed view of an already validated tree."""
    classes = {
        "camera": CameraConfig,
        "detector": DetectorConfig,
        "classifier": ClassifierConfig,
        "runtime": RuntimeConfig,
        "tracker": TrackerConfig,
        "indicators": IndicatorsConfig,
        "events": EventsConfig,
        "preview": PreviewConfig,
        "mqtt": MqttConfig,
    }
    built = {name: _section(cls, tree[name]) for name, cls in classes.items()}
    cfg = Config(**built, raw=copy.deepcopy(dict(tree)))
    if cfg.camera.reopen_backoff_max_s < cfg.camera.reopen_backoff_s:
        raise ConfigError(
            "'camera.reopen_backoff_max_s' must be at least 'camera.reopen_backoff_s' "
            f"({cfg.camera.reopen_backoff_max_s} < {cfg.camera.reopen_backoff_s})"
        )
    m = cfg.mqtt
    if sum(bool(x) for x in (m.password, m.password_env, m.password_file)) > 1:
        raise ConfigError(
            "'mqtt.password', 'mqtt.password_env' and 'mqtt.password_file' are alternatives: set one"
        )
    if m.keyfile and not m.certfile:
        raise ConfigError("'mqtt.keyfile' is set without 'mqtt.certfile': set both, or neither")
    return cfg


def secret_warnings(cfg: Config, path: str | Path | None) -> list[str]:
    """One line per file holding an MQTT password that other users of this machine can read."""
    files = []
    if path is not None and cfg.mqtt.password:
        files.append((Path(path), "holds mqtt.password"))
    if cfg.mqtt.password_file:
        files.append((Path(cfg.mqtt.password_file).expanduser(), "is mqtt.password_file"))
    lines = []
    for file, why in files:
        try:
            mode = file.stat().st_mode
        except OSError:
            continue  # a missing password file is reported when it is read
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            lines.append(
                f"{file} {why} and is readable by other users (mode {stat.filemode(mode)}); "
                f"run: chmod 600 {file}"
            )
    return lines


def load_config(
    path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> Config:
    """Defaults, then the file at ``path`` (if any), then ``overrides`` ({"camera.fps": 10}).

    Raises ConfigError with one line naming the file and key on any problem.
    """
    tree = default_tree()
    if path is not None:
        p = Path(path)
        _merge(str(p), tree, _read_toml(p))
    for key, value in (overrides or {}).items():
        *tables, name = key.split(".")
        _merge("command line", tree, _nest(tables, {name: value}))
    return build_config(tree)


def _nest(tables: list[str], leaf: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = leaf
    for t in reversed(tables):
        out = {t: out}
    return out


def rule_keys() -> set[str]:
    return set(_RULES)
