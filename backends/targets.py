"""The target registry: `smelt.compile(graph, target, **options)` looks the target up here by
name and hands the graph and options to it.

A target is a `Target`: its name, a one-line summary, `compile(graph, **options)` (the whole
build, in the target's folder), `tvm_target(**options)` (TVM's target for those options,
checking them: a bad option fails before any work), and `load(path, signature)` for the
libraries its modules export. smelt's own targets live in backends/cpu/, backends/cuda/ and
backends/mcu/ and are declared as entry points of the `smelt.targets` group (pyproject.toml),
loaded the first time their name is asked for; a package of another project registers its
target the same way, or at run time with `register_target`. This module imports no target
folder: the entry point names the module, and nothing else here knows it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from smelt.ir.errors import SmeltError

GROUP = "smelt.targets"


class TargetError(SmeltError):
    """A target smelt does not know, an option it does not take, or one this machine cannot
    build for."""


@dataclass(frozen=True)
class Target:
    name: str
    summary: str
    #: (graph, **options) -> a compiled module; raises TargetError on an option it lacks
    compile: Callable[..., Any]
    #: (**options) -> tvm.target.Target, after checking the options
    tvm_target: Callable[..., Any]
    #: (library path, its signature JSON) -> a module, for `smelt.load_compiled`
    load: Callable[[Path, dict[str, Any]], Any] | None = None


_REGISTERED: dict[str, Target] = {}


def register_target(target: Target) -> Target:
    """Make `target` known by its name (replacing one of the same name)."""
    _REGISTERED[target.name] = target
    return target


def _declared() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def target_names() -> list[str]:
    """Every target smelt can compile for: registered, or declared by an installed package."""
    return sorted(set(_REGISTERED) | set(_declared()))


def get_target(name: str) -> Target:
    """The target called `name`, loading its package on first use."""
    if name not in _REGISTERED:
        declared = _declared().get(name) if isinstance(name, str) else None
        if declared is None:
            raise TargetError(f"unknown target {name!r}; smelt compiles for "
                              f"{', '.join(map(repr, target_names()))} (C for a "
                              "microcontroller board: target='c', board='mps2-an386', ...)")
        target = declared.load()
        if not isinstance(target, Target) or target.name != name:
            raise TargetError(f"entry point {declared.value!r} of group {GROUP!r} must name a "
                              f"Target called {name!r}, got {target!r}")
        register_target(target)
    return _REGISTERED[name]


def make_target(name: str, **options: Any):
    """TVM's target for `name` and `options` (checked: a bad option raises TargetError)."""
    return get_target(name).tvm_target(**options)


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def check_options(name: str, options: dict[str, Any], allowed: tuple[str, ...],
                  hints: dict[str, str] | None = None) -> None:
    """Raise TargetError naming any option target `name` does not take (with its value, and
    the target's hint for it, if any)."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        takes = _listed([f"{o}=" for o in allowed]) if allowed else "no options"
        given = _listed([f"{o}={options[o]!r}" for o in unknown])
        why = "".join(f"; {(hints or {})[o]}" for o in unknown if o in (hints or {}))
        raise TargetError(f"target {name!r} takes {takes}, not {given}{why}")
