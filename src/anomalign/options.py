"""``KEY=VALUE`` option strings from the command line, shared by every command."""

from __future__ import annotations

import json
from typing import Any

from anomalign.errors import ConfigError


def parse_key_value(text: str, flag: str, form: str = "KEY=VALUE") -> tuple[str, Any]:
    """``"smoothing=gaussian"`` -> ``("smoothing", "gaussian")``.

    Values are read as JSON when they parse (numbers, true/false, null, lists), else kept
    as text. A malformed string raises :class:`ConfigError` naming ``flag``.
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{flag} must look like {form}, got '{text}'.")
    try:
        return key.strip(), json.loads(raw)
    except json.JSONDecodeError:
        return key.strip(), raw
