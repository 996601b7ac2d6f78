"""How deeply parsed JSON nests, measured without recursion (every adapter limits it)."""

from __future__ import annotations

from typing import Any


def nests_deeper_than(data: Any, limit: int) -> bool:
    """Say whether JSON-like data nests more than `limit` objects/arrays deep.

    Level by level, not recursively: the point is to refuse, before anything recursive (a
    validator, json.dumps) touches it, data deep enough to exhaust the interpreter's stack.
    """
    level, depth = [data], 1
    while level:
        if depth > limit:
            return True
        below: list[Any] = []
        for value in level:
            for child in value.values() if isinstance(value, dict) else value:
                if isinstance(child, (dict, list)):
                    below.append(child)
        level, depth = below, depth + 1
    return False
