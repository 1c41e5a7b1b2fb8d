"""Typed errors. Each message says what was wrong and what to do about it."""

from __future__ import annotations


class SmeltError(Exception):
    """Base class of every error smelt raises on purpose."""


class TypeInferenceError(SmeltError, TypeError):
    """A node was built with inputs or attributes its op does not accept."""


class UnsupportedOpError(SmeltError, NotImplementedError):
    """A frontend met an operation that no smelt op covers."""

    def __init__(self, op: str, source: str | None, frontend: str, hint: str = "") -> None:
        self.op = op
        self.source = source
        self.frontend = frontend
        where = f"\n  at: {source.strip()}" if source else "\n  at: (no source location recorded)"
        what_to_do = hint or (
            "rewrite that line with supported operations (see `smelt.ops()` for the op "
            "table), or add a converter for it to the frontend's table"
        )
        super().__init__(
            f"{frontend} frontend: unsupported operation {op!r}{where}\n  to do: {what_to_do}"
        )


class VerificationError(SmeltError):
    """A graph breaks an IR invariant; the message shows the lines around the bad node."""


class ParseError(SmeltError, ValueError):
    """Text that is not a well-formed smelt graph; the message names the line."""

    def __init__(self, message: str, line_no: int | None = None, line: str | None = None):
        self.line_no = line_no
        self.line = line
        loc = f"line {line_no}: " if line_no is not None else ""
        if line is not None and len(line) > 200:  # a huge line would drown the message
            line = line[:200] + f"... ({len(line)} characters)"
        text = f"\n  {line_no} | {line}" if line is not None else ""
        super().__init__(f"{loc}{message}{text}")


class FileFormatError(SmeltError, ValueError):
    """A saved model file is missing, malformed or unsafe to load, or cannot be written."""


class InterpretError(SmeltError, RuntimeError):
    """The reference interpreter was given inputs that do not match the graph."""
