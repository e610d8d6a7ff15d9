"""Strategy specs: a registered name with options in brackets, ``bal[first=typical,beta=2]``.

As timm reads ``name.tag``, bal reads ``name[key=value,...]``: the name picks the strategy, the
options are its keyword options (``bal.selection.strategy_options``) and the embedding it reads
(``view``, ``feature_norm``). A value is an int, a float, ``none``, or else a string. This module
only parses; :func:`bal.selection.create_strategy` checks the options against the strategy, so an
option it does not take is an error naming the option.
"""

from __future__ import annotations

import re
from typing import Any

from bal.errors import ParameterError

__all__ = ["EMBEDDING_OPTIONS", "parse_strategy", "split_strategy_list"]

#: Options of a spec that choose the embedding a strategy reads rather than the strategy itself.
EMBEDDING_OPTIONS = ("view", "feature_norm")

_SPEC = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(?:\[(.*)\])?\s*$")


def _value(text: str) -> Any:
    text = text.strip()
    if text.lower() in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_strategy(spec: str, param: str = "strategy") -> tuple[str, dict[str, Any]]:
    """``"bal[first=typical,beta=2]"`` -> ``("bal", {"first": "typical", "beta": 2})``.

    Raises :class:`~bal.errors.ParameterError` (named ``param``) for text that is not
    ``NAME`` or ``NAME[key=value,...]``, or an option given twice.
    """
    match = _SPEC.match(str(spec))
    if not match:
        raise ParameterError(param, f"{{name}}: cannot read {spec!r}; write NAME or NAME[option=value,...]")
    name, body = match.group(1), match.group(2)
    options: dict[str, Any] = {}
    for item in filter(None, (x.strip() for x in (body or "").split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ParameterError(param, f"{{name}}: {spec!r}: options are key=value, got {item!r}")
        if key in options:
            raise ParameterError(param, f"{{name}}: {spec!r} gives {key} twice")
        options[key] = _value(value)
    return name, options


def split_strategy_list(text: str) -> list[str]:
    """A command-line list of strategy specs: commas and spaces separate them, except inside [...]."""
    return [s.strip() for s in re.findall(r"[^,\s\[]+(?:\[[^\]]*\])?", text) if s.strip()]
