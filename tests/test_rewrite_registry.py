"""The registry is complete and `import smelt` stays light:

- every Rule defined at module level in `smelt.passes` or `smelt.rewrite` (alone or in a
  RuleSet) is registered, so CI's verification over `smelt.rules()` covers it;
- every rule that names its instance builder (`instance="module:function"`) names one that
  exists;
- `import smelt` imports neither hypothesis (verification loads it when it runs) nor torch,
  TVM or JAX (the frontends and backends load them when called).
"""

import importlib
import pkgutil
import subprocess
import sys

import pytest

from smelt.rewrite import Rule, RuleDefinitionError, RuleSet, exact, op, rule, rules, var


def module_rules(package: str) -> dict[str, list[Rule]]:
    """The rules each module of `package` holds at module level (alone or in a RuleSet)."""
    found: dict[str, list[Rule]] = {}
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, Rule):
                found.setdefault(info.name, []).append(value)
            elif isinstance(value, RuleSet):
                found.setdefault(info.name, []).extend(value)
    return found


@pytest.mark.parametrize("package", ["smelt.passes", "smelt.rewrite"])
def test_every_rule_the_library_defines_is_registered(package):
    registered = rules()
    missing = sorted({f"{r.name} (in {where})" for where, found in module_rules(package).items()
                      for r in found if r.name not in registered or registered[r.name] is not r})
    assert not missing, f"rules missing from smelt.rules() (call register_rules): {missing}"


def test_the_walk_sees_the_shipped_families():
    found = module_rules("smelt.passes")
    assert {"smelt.passes.batchnorm_folding", "smelt.passes.fusion",
            "smelt.passes.fold_qdq"} <= set(found)


@pytest.mark.parametrize("r", [r for r in rules() if isinstance(r.instance, str)],
                         ids=lambda r: r.name)
def test_named_instance_builders_exist(r):
    assert callable(r.instance_builder())


x = var("x")


def test_a_bad_instance_name_is_a_rule_definition_error():
    with pytest.raises(RuleDefinitionError, match="package.module:function"):
        @rule(op.neg(op.neg(x)), contract=exact, instance="no colon here")
        def neg_neg(x):
            """-(-x) -> x"""
            return x

    def neg_neg_here(x):
        """-(-x) -> x"""
        return x

    neg_neg_here.__module__ = "smelt.passes.fusion"  # as if defined beside the fuse rules
    relative = rule(op.neg(op.neg(x)), contract=exact,
                    instance=".no_such_module:builder")(neg_neg_here)
    assert relative.instance == "smelt.passes.no_such_module:builder"
    with pytest.raises(RuleDefinitionError, match="cannot load its instance builder"):
        relative.instance_builder()


def test_import_smelt_loads_no_hypothesis_torch_tvm_or_jax():
    code = ("import sys, smelt\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
            "{'hypothesis', 'torch', 'tvm', 'jax'})\n"
            "print(','.join(heavy))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "", f"import smelt imported {out.stdout.strip()}"
