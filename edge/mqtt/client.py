"""Settings shared by the door's publisher and `masknet watch`: names, password, TLS, the client.

Everything a user can get wrong in the files (a missing CA file, an unset password variable) is
a ConfigError at start. What the broker does later (refuses, is down) is a line in the log.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
from pathlib import Path
from typing import Any

from edge.config import MqttConfig
from edge.errors import ConfigError


def door_name(cfg: MqttConfig) -> str:
    """mqtt.door, or this machine's host name made safe for topics and Home Assistant ids."""
    if cfg.door:
        return cfg.door
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname().split(".")[0]) or "door"


def topic_prefix(cfg: MqttConfig, door: str) -> str:
    return cfg.topic_prefix or f"masknet/{door}"


def resolve_password(cfg: MqttConfig) -> str | None:
    """The password from the config, the environment or a file; None when there is none."""
    if cfg.password:
        return cfg.password
    if cfg.password_env:
        value = os.environ.get(cfg.password_env)
        if value is None:
            raise ConfigError(
                f"mqtt.password_env: the environment variable {cfg.password_env} is not set"
            )
        return value
    if cfg.password_file:
        path = Path(cfg.password_file).expanduser()
        try:
            return path.read_text(encoding="utf-8").strip("\r\n")
        except OSError as exc:
            raise ConfigError(f"mqtt.password_file: cannot read {path} ({exc.strerror})") from None
    return None


def tls_context(cfg: MqttConfig) -> ssl.SSLContext | None:
    """The TLS context (built here, so a bad file is named at start), or None without TLS."""
    if not (cfg.tls or cfg.ca_file):
        return None
    for key in ("ca_file", "certfile", "keyfile"):
        value = getattr(cfg, key)
        if value and not Path(value).expanduser().is_file():
            raise ConfigError(f"mqtt.{key}: {value} is not a file")
    try:
        ctx = ssl.create_default_context(
            cafile=str(Path(cfg.ca_file).expanduser()) if cfg.ca_file else None
        )
    except ssl.SSLError as exc:
        raise ConfigError(f"mqtt.ca_file: {cfg.ca_file} is not a PEM CA certificate ({exc})") from None
    if cfg.certfile:
        try:
            ctx.load_cert_chain(
                str(Path(cfg.certfile).expanduser()),
                str(Path(cfg.keyfile).expanduser()) if cfg.keyfile else None,
            )
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"mqtt.certfile: cannot load {cfg.certfile} with its key ({exc})"
            ) from None
    return ctx


def make_client(
    cfg: MqttConfig,
    client_id: str,
    password: str | None,
    tls: ssl.SSLContext | None,
    will: tuple[str, str] | None = None,
) -> Any:
    """A fresh paho client (MQTT 3.1.1, clean session), not yet connected."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311,
        clean_session=True,
    )
    client.connect_timeout = 5.0
    if will is not None:
        client.will_set(will[0], will[1], qos=1, retain=True)
    if cfg.username or password is not None:
        client.username_pw_set(cfg.username or None, password)
    if tls is not None:
        client.tls_set_context(tls)
    return client


def describe_error(cfg: MqttConfig, exc: BaseException) -> str:
    """One line for a failed connection attempt, naming what to check."""
    where = f"{cfg.host}:{cfg.port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS with {where}: the broker's certificate is not trusted "
            f"({exc.verify_message}); check mqtt.ca_file"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS with {where} failed ({exc.reason or exc}); check mqtt.tls, mqtt.port and the certificates"
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot reach the broker at {where} (connection refused); check mqtt.host and mqtt.port"
    if isinstance(exc, socket.gaierror):
        return f"cannot reach the broker at {where} (unknown host); check mqtt.host"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"cannot reach the broker at {where} (no answer); check mqtt.host and mqtt.port"
    if isinstance(exc, OSError):
        return f"cannot reach the broker at {where} ({exc.strerror or exc}); check mqtt.host and mqtt.port"
    return f"cannot connect to the broker at {where} ({exc})"


def describe_refusal(cfg: MqttConfig, reason: object) -> str:
    """One line for a CONNACK that refused us."""
    where = f"{cfg.host}:{cfg.port}"
    text = str(reason)
    if "authori" in text.lower() or "user name or password" in text.lower():
        return (
            f"the broker at {where} refused the credentials ({text}); "
            "check mqtt.username and the password"
        )
    return f"the broker at {where} refused the connection ({text})"
