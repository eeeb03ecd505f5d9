"""The configuration a session evaluated under, as the store logs it (table ``config_log``).

A restart applies each logged configuration between the events it came between, so it rebuilds
the state the session had, rule changes included. Only what evaluation reads is compared: the
groups, the device mapping and the engine timing.
"""

from __future__ import annotations

import tomllib

from engine.config import Config, parse_config
from engine.config_edit import config_to_toml

LOGGED_NAME = "iotwatch.toml"  # the name a logged configuration is read under


def text_of(config: Config) -> str:
    """The TOML text the log keeps of ``config``."""
    return config_to_toml(config, LOGGED_NAME)


def parse_logged(text: str) -> Config:
    """A logged configuration. Raises ConfigError or TOMLDecodeError for a damaged one."""
    return parse_config(tomllib.loads(text), LOGGED_NAME)


def same_rules(a: Config, b: Config) -> bool:
    """Whether evaluation under ``a`` and ``b`` is the same."""
    return (a.groups, a.devices, a.lateness, a.quiet, a.horizon) == (
        b.groups,
        b.devices,
        b.lateness,
        b.quiet,
        b.horizon,
    )
