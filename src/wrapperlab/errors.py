"""One error type for bad input, so every entry point can turn it into one clear line and exit 2."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A bad value where it enters: names the field, the value and what is allowed."""

    def __init__(self, field: str, value: Any, allowed: str):
        self.field, self.value, self.allowed = field, value, allowed
        super().__init__(f"{field}: got {value!r}; expected {allowed}")
