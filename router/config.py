"""Settings: parsed from a YAML file and command-line flags into frozen dataclasses (pure).

Errors name the file, the key, what was found and what is expected.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 5672
    channel_max: int = 2047
    frame_max: int = 131072
    heartbeat: int = 60
    max_message_size: int = 128 * 1024 * 1024
    users: tuple[tuple[str, str], ...] = (("guest", "guest"),)
    vhosts: tuple[str, ...] = ("/",)
    log_level: str = "info"
    data_dir: str = "./var/router"
    # bytes of persistent message bodies kept in memory; past it, bodies are read back from the
    # store on delivery (0: no limit)
    memory_budget: int = 256 * 1024 * 1024
    # the memory alarm (RabbitMQ's vm_memory_high_watermark): at or above this resident memory,
    # publishing connections are blocked. <= 1: a fraction of RAM; > 1: bytes
    memory_high_watermark: float = 0.4
    # the management HTTP API (RabbitMQ's paths), on management_host:management_port
    management: bool = True
    management_host: str = "127.0.0.1"
    management_port: int = 15672
    # Prometheus metrics on a port of their own too (RabbitMQ's is 15692); None: only at the
    # management API's /metrics
    prometheus_port: int | None = None
    # "text" (one readable line per event) or "json" (one JSON object per line)
    log_format: str = "text"
    # topology files or directories applied before listening and on SIGHUP (docs/topology.md)
    topology: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


_INTS = {
    "port": (0, 65535),
    "channel_max": (1, 65535),
    "frame_max": (4096, 1 << 31),
    "heartbeat": (0, 65535),
    "max_message_size": (1, 512 * 1024 * 1024),
    "memory_budget": (0, 1 << 50),
    "management_port": (0, 65535),
    "prometheus_port": (0, 65535),
}
_STRS = ("host", "log_level", "data_dir", "management_host")
LOG_FORMATS = ("text", "json")


def load_settings(path: str | Path | None, overrides: dict[str, Any] | None = None) -> Settings:
    """Settings from ``path`` (a YAML mapping; missing file = defaults) with ``overrides`` on top."""
    values: dict[str, Any] = {}
    where = str(path) if path else "<defaults>"
    if path is not None and Path(path).exists():
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{where}: not valid YAML: {error}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{where}: expected a mapping of settings at the top level")
        values.update(loaded)
    if isinstance(values.get("topology"), (str, list)) and path is not None:
        # paths in the settings file are relative to the file, so it works from any directory
        base = Path(path).parent
        names = [values["topology"]] if isinstance(values["topology"], str) else values["topology"]
        values["topology"] = [str(base / n) if isinstance(n, str) else n for n in names]
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    settings = Settings()
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key in _INTS:
            low, high = _INTS[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(
                    f"{where}: key '{key}': found {value!r}, expected an integer from {low} to "
                    f"{high}"
                )
            changes[key] = value
        elif key in _STRS:
            if not isinstance(value, str):
                raise ConfigError(f"{where}: key '{key}': found {value!r}, expected a string")
            changes[key] = value
        elif key == "memory_high_watermark":
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or value < 0
                or (value > 1 and not float(value).is_integer())
            ):
                raise ConfigError(
                    f"{where}: key 'memory_high_watermark': found {value!r}, expected a fraction "
                    f"of RAM from 0 to 1 (e.g. 0.4, the default) or a number of bytes above 1 "
                    f"(e.g. 2147483648)"
                )
            changes[key] = value
        elif key == "management":
            if not isinstance(value, bool):
                raise ConfigError(
                    f"{where}: key 'management': found {value!r}, expected true or false"
                )
            changes[key] = value
        elif key == "log_format":
            if value not in LOG_FORMATS:
                raise ConfigError(
                    f"{where}: key 'log_format': found {value!r}, expected one of "
                    f"{', '.join(LOG_FORMATS)}"
                )
            changes[key] = value
        elif key == "topology":
            names = [value] if isinstance(value, str) else value
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ConfigError(
                    f"{where}: key 'topology': found {value!r}, expected a file or directory "
                    f"name, or a list of them, e.g. topology: topology.yaml"
                )
            changes["topology"] = tuple(names)
        elif key == "users":
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise ConfigError(
                    f"{where}: key 'users': expected a mapping of user name to password, "
                    f"e.g. users: {{guest: guest}}"
                )
            changes["users"] = tuple(value.items())
        elif key == "vhosts":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}: key 'vhosts': expected a list of names, e.g. ['/']")
            changes["vhosts"] = tuple(value)
        else:
            known = ", ".join(
                sorted(
                    [
                        *_INTS,
                        *_STRS,
                        "users",
                        "vhosts",
                        "topology",
                        "memory_high_watermark",
                        "management",
                        "log_format",
                    ]
                )
            )
            raise ConfigError(f"{where}: unknown key '{key}'; known keys are: {known}")
    return replace(settings, **changes)
