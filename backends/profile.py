"""Where a compiled module's time goes: time per kernel, with the rule that scheduled it.

TVM 0.27's Relax VM has no profiler (`VirtualMachine(..., profile=True)` and `vm.profile` were
removed), but it calls an instrument function before and after every Call instruction
(`VirtualMachine.set_instrument`). `profile_kernels` runs the module on its own VM with an
instrument that stamps the clock on both sides of each call and sums the time per callee,
per run: smelt's kernels (their schedule rule from `module.kernels`) and the VM's builtins
(`vm.builtin.*`: allocation, shape checks, reshapes; rule None). Each callee reports the
median of its per-run totals, so one run slowed by another process does not skew it; shares
are of the sum of those medians (the VM's own dispatch between calls is not in it).

Each call's time includes the instrument's own overhead (a Python call on each side, about a
microsecond or two), so kernels that run for only a few microseconds read high; the shares
of kernels that matter (tens of microseconds and up) are not affected.

    from smelt.backends.profile import profile_kernels
    for row in profile_kernels(module, x)[:10]:
        print(row["name"], row["rule"], row["calls"], row["total_us"], row["share"])
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import numpy as np
import tvm
from tvm import relax

from .compiled import CompiledModule

BUILTIN_PREFIX = "vm.builtin."


class _CallClock:
    """The instrument: nanoseconds and call counts per callee symbol, one dict per run."""

    def __init__(self) -> None:
        self.ns: list[dict[str, int]] = []
        self.calls: dict[str, int] = defaultdict(int)
        self._started: list[int] = []

    def next_run(self) -> None:
        self.ns.append(defaultdict(int))

    def __call__(self, func: Any, symbol: str, before: bool, ret: Any, *args: Any) -> int:
        now = time.perf_counter_ns()
        if before:
            self._started.append(now)
        else:
            self.ns[-1][symbol] += now - self._started.pop()
            self.calls[symbol] += 1
        return 0  # VMInstrumentReturnKind.NO_OP: run the call


def _device_inputs(module: CompiledModule, inputs: tuple[Any, ...]) -> list[Any]:
    """The inputs checked by the module's own rule (ir/inputs.py), as device tensors."""
    return [tvm.runtime.tensor(a, module.device) for a in module.input_arrays(inputs)]


def _rows(module: CompiledModule, clock: _CallClock) -> list[dict[str, Any]]:
    runs = len(clock.ns)
    median_us = {name: float(np.median([run.get(name, 0) for run in clock.ns])) / 1e3
                 for name in clock.calls}
    total = sum(median_us.values()) or 1.0
    rows = [{"name": name,
             "rule": module.kernels.get(name),
             "builtin": name.startswith(BUILTIN_PREFIX),
             "calls": clock.calls[name] // runs,
             "total_us": us,
             "share": us / total}
            for name, us in median_us.items()]
    return sorted(rows, key=lambda r: r["total_us"], reverse=True)


def profile_kernels(module: CompiledModule, *inputs: Any, runs: int = 10,
                    warmup: int = 2) -> list[dict[str, Any]]:
    """Per-callee time of one run of `module` on `inputs`: the median over `runs` runs
    (after `warmup` untimed ones), so a run disturbed by another process does not count.

    Returns one dict per kernel or VM builtin, largest total first: name, rule (the schedule
    rule from module.kernels; None for builtins and unscheduled kernels), builtin (bool),
    calls (per run), total_us (per run, all calls together) and share (of the summed time).
    """
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    vm = relax.VirtualMachine(module.executable, module.device)
    args = _device_inputs(module, inputs)
    for _ in range(warmup):
        vm["main"](*args)
    clock = _CallClock()
    vm.set_instrument(clock)
    for _ in range(runs):
        clock.next_run()
        vm["main"](*args)
    return _rows(module, clock)
