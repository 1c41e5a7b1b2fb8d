"""Errors of the rewrite engine, passes, pipelines and verification.

Each one names what broke (a rule, a pass, a pipeline step) and says what to do next.
"""

from __future__ import annotations

from collections.abc import Sequence

from smelt.ir.errors import SmeltError


class RuleDefinitionError(SmeltError, ValueError):
    """A rule, rule set or pattern was declared wrongly (no `lhs -> rhs` doc, a lambda,
    an unknown op, two rules with one name)."""


class RewriteTypeError(SmeltError, TypeError):
    """A rule returned a node whose type differs from the node it replaces."""


class NonTerminationError(SmeltError, RuntimeError):
    """Rewriting did not reach a fixpoint: a rule cycle, or a step budget breached.

    `rules` names the rules that kept firing, most frequent first."""

    def __init__(self, message: str, rules: Sequence[str]) -> None:
        self.rules = tuple(rules)
        super().__init__(message)


class PipelineParseError(SmeltError, ValueError):
    """A pipeline spec such as "canonicalize,fuse(x=1)" could not be read."""


class UnknownPassError(SmeltError, KeyError):
    """A pipeline names a pass that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ContractViolation(SmeltError, AssertionError):
    """Two graphs that a contract says agree do not; the message holds a counterexample."""


class PassContractError(ContractViolation):
    """A pipeline pass broke its contract; `index` and `pass_name` say which one."""

    def __init__(self, message: str, index: int, pass_name: str) -> None:
        self.index = index
        self.pass_name = pass_name
        super().__init__(message)


class InstanceError(SmeltError, RuntimeError):
    """No random instance of a rule's pattern could be built on which the rule fires."""
