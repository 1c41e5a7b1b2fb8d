"""The registries: every rule the library ships, and every pass a pipeline spec can name.

Rule families register themselves when `smelt.passes` is imported; `rules()` imports it first,
so `smelt.rules()` always lists everything (CI verifies every rule it returns). Rules written
in tests or notebooks are not registered unless someone calls `register_rules`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .errors import RuleDefinitionError, UnknownPassError
from .rule import Rule, RuleSet

_RULES: dict[str, Rule] = {}
_PASSES: dict[str, tuple[Callable[..., Any], str]] = {}
_PASS_NAME = re.compile(r"[a-z][a-z0-9_-]*")


def register_rules(*items: Rule | RuleSet) -> None:
    """Add rules to the registry (names are global: a second rule with a taken name fails)."""
    for r in RuleSet(items):
        other = _RULES.get(r.name)
        if other is not None and other is not r:
            raise RuleDefinitionError(f"a different rule named {r.name!r} is already registered")
        _RULES[r.name] = r


def _load_builtin() -> None:
    import smelt.passes  # noqa: F401  (registers the rule families and passes)


def rules() -> RuleSet:
    """Every registered rule, in registration order; `print(smelt.rules())` shows a table
    of names, families, contracts and `lhs -> rhs`."""
    _load_builtin()
    return RuleSet(_RULES.values(), name="registered")


def get_rule(name: str) -> Rule:
    _load_builtin()
    try:
        return _RULES[name]
    except KeyError:
        raise KeyError(f"no registered rule {name!r}; see smelt.rules()") from None


def register_pass(name: str, factory: Callable[..., Any], doc: str = "") -> None:
    """Make `name` usable in pipeline specs; `factory(*args, **options)` builds the Pass."""
    if not _PASS_NAME.fullmatch(name):
        raise RuleDefinitionError(f"pass name {name!r} must be lower-case words joined by '-'")
    old = _PASSES.get(name)
    if old is not None and old[0] is not factory:
        raise RuleDefinitionError(f"a different pass named {name!r} is already registered")
    _PASSES[name] = (factory, doc or (factory.__doc__ or "").strip().split("\n")[0])


def unregister_pass(name: str) -> None:
    _PASSES.pop(name, None)


def get_pass(name: str, *args: Any, **options: Any) -> Any:
    """Build the registered pass `name` with its options."""
    _load_builtin()
    entry = _PASSES.get(name)
    if entry is None:
        known = ", ".join(sorted(_PASSES)) or "none"
        raise UnknownPassError(f"unknown pass {name!r}; registered passes: {known}")
    return entry[0](*args, **options)


def passes() -> dict[str, str]:
    """Registered pass names and their one-line docs."""
    _load_builtin()
    return {k: v[1] for k, v in sorted(_PASSES.items())}
