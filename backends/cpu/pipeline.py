"""The Relax pipeline smelt compiles CPU modules with.

TVM's default CPU pipeline legalizes and fuses but schedules nothing. This one legalizes the
contractions into smelt's own kernels with packed weights (cpu/legalize.py), folds constants
(the weight packing among them), fuses elementwise epilogues into their producers, schedules
every kernel (cpu/schedule.py), lets producers write their consumers' padded int8 inputs in
place (cpu/pad_in_producer.py), then lowers to the VM as TVM's pipeline does. The steps are
run in that order by backends/compile.py (`_build`), which also races MetaSchedule between
scheduling and the padded-input rewrite when asked to tune.
"""

from __future__ import annotations

import tvm
from tvm import relax

from .legalize import LEGALIZE


def lower_to_kernels(target: tvm.target.Target | None = None,
                     legalize: dict | None = LEGALIZE) -> tvm.transform.Pass:
    """Relax module -> fused, legalized (not yet scheduled) kernels. `legalize` overrides
    TVM's legalization per op (smelt's packed CPU kernels by default; None: TVM's own, as
    the CUDA pipeline uses)."""
    return tvm.transform.Sequential([
        relax.backend.DispatchSampling(),
        relax.backend.DispatchSortScan(),
        relax.transform.LegalizeOps(customize_legalize_map=legalize),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
        relax.transform.DeadCodeElimination(),
    ])


def finish(target: tvm.target.Target) -> tvm.transform.Pass:
    """Scheduled kernels -> a module the Relax VM runs (for CUDA, with TVM's CUDA-graph
    capture of the planned allocations)."""
    cuda_graph = [relax.transform.RewriteCUDAGraph()] if target.kind.name == "cuda" else []
    return tvm.transform.Sequential([
        relax.transform.RewriteDataflowReshape(),
        relax.transform.ToNonDataflow(),
        relax.transform.RemovePurityChecking(),
        relax.transform.CallTIRRewrite(),
        relax.transform.StaticPlanBlockMemory(),
        *cuda_graph,
        relax.transform.LowerAllocTensor(),
        relax.transform.KillAfterLastUse(),
        relax.transform.LowerRuntimeBuiltin(),
        relax.transform.ComputePrimValue(),
        relax.transform.VMShapeLower(),
        relax.transform.AttachGlobalSymbol(),
    ])
