"""smelt.rewrite: the declarative rewrite engine.

Patterns (`op`, `var`, `const`, `any_of`, `any_op`, operator sugar), rules (`@rule`, a
pattern + rewrite function + contract + `lhs -> rhs` doc), rule sets (`+`), the driver
(`rewrite`), `explain`, contracts (`exact`, `bounded`), passes, pipelines, the registries
(`rules()`, `passes()`), and verification (also shipped as `smelt.testing`).

`verify_rule` and `verify_pass` are hypothesis properties: they load (with hypothesis) on
first use, so `import smelt.rewrite` does not import hypothesis.
"""

from .contract import Contract, bounded, exact
from .driver import RewriteResult, rewrite, rewrite_nodes
from .dsl import any_of, any_op, const, op, var
from .equivalence import assert_equivalent
from .errors import (
    ContractViolation,
    InstanceError,
    NonTerminationError,
    PassContractError,
    PipelineParseError,
    RewriteTypeError,
    RuleDefinitionError,
    UnknownPassError,
)
from .explain import Explanation, explain
from .layer_errors import LayerError, LayerErrors, layer_errors
from .pass_api import (
    FunctionPass,
    Pass,
    PassContext,
    PassReport,
    PassResult,
    RewritePass,
    function_pass,
)
from .pattern import Pattern
from .pipeline import Bisection, Pipeline, PipelineReport, PipelineResult
from .registry import get_pass, get_rule, passes, register_pass, register_rules, rules
from .rule import NoMatch, Rule, RuleSet, reject, rule
from .stats import RuleStats, Stats, TraceEntry

__all__ = [
    "Bisection", "Contract", "ContractViolation", "Explanation", "FunctionPass",
    "InstanceError", "LayerError", "LayerErrors", "NoMatch", "NonTerminationError", "Pass",
    "PassContext",
    "PassContractError", "PassReport", "PassResult", "Pattern", "Pipeline", "PipelineParseError",
    "PipelineReport", "PipelineResult", "RewritePass", "RewriteResult", "RewriteTypeError",
    "Rule", "RuleDefinitionError", "RuleSet", "RuleStats", "Stats", "TraceEntry",
    "UnknownPassError", "any_of", "any_op", "assert_equivalent", "bounded", "const", "exact",
    "explain", "function_pass", "get_pass", "get_rule", "layer_errors", "op", "passes",
    "register_pass", "register_rules", "reject", "rewrite", "rewrite_nodes", "rule", "rules",
    "var", "verify_pass", "verify_rule",
]


def __getattr__(name: str):
    if name in ("verify_pass", "verify_rule"):  # hypothesis properties: loaded when asked for
        from . import verify

        return getattr(verify, name)
    raise AttributeError(f"module 'smelt.rewrite' has no attribute {name!r}")
