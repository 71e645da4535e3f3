"""Passwords kept out of the YAML: password files, systemd credentials, the environment."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote, urlparse, urlsplit, urlunsplit

from edgeemo.config.redact import redact
from edgeemo.config.schema import Config, ConfigError, MqttConfig, SourceConfig


def with_source_passwords(cfg: Config) -> Config:
    """Put each source's password (from outside the YAML) into its url's `user@`, in memory only."""
    for i, source in enumerate(cfg.sources):
        password = source_password(source)
        if password is not None:
            parts = urlsplit(source.url)
            netloc = f"{parts.netloc.split('@')[0]}:{quote(password, safe='')}@{parts.netloc.split('@', 1)[1]}"
            cfg.sources[i] = source.model_copy(update={"url": urlunsplit(parts._replace(netloc=netloc))})
    return cfg


def source_password(source: SourceConfig) -> str | None:
    """A stream's password: `password_file`, else the systemd credential `source_<name>_password`
    ($CREDENTIALS_DIRECTORY, LoadCredential=), else $EDGEEMO_SOURCE_<NAME>_PASSWORD; only for a url
    with a `user@` and no password of its own."""
    if source.url is None:
        return None
    parsed = urlparse(source.url)
    key = f"sources.{source.name}.password_file"
    if "://" not in source.url or not parsed.username or parsed.password is not None:
        if source.password_file is not None:
            raise ConfigError(f"{key}: needs a url with a user name and no password (rtsp://user@host/...), "
                              f"got {redact(source.url)!r}")
        return None
    path = source.password_file or credential(f"source_{source.name}_password")
    if path is None:
        return os.environ.get(f"EDGEEMO_SOURCE_{source.name.upper().replace('-', '_')}_PASSWORD") or None
    return read_secret(key, path)


def read_secret(key: str, path: Path) -> str:
    """The first line of a password file, surrounding whitespace stripped; a problem names key and file."""
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{key}: cannot read {path}: not UTF-8 text") from None
    if not secret:
        raise ConfigError(f"{key}: {path} is empty")
    return secret


def mqtt_password(cfg: MqttConfig) -> str | None:
    """The broker password from a file, systemd credentials, or the environment: never from the YAML."""
    if cfg.password_file is not None:
        return read_secret("mqtt.password_file", cfg.password_file)
    path = credential("mqtt_password")
    if path is not None:
        return read_secret("credential mqtt_password", path)
    return os.environ.get(cfg.password_env)


def credential(name: str) -> Path | None:
    """A systemd credential (LoadCredential=, in $CREDENTIALS_DIRECTORY) by name, when the unit passes it."""
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    path = Path(creds) / name if creds else None
    return path if path is not None and path.is_file() else None
