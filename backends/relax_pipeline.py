"""The Relax pass sequences every target's build shares: to fused kernels, and from scheduled
kernels to a module the Relax VM runs.

    fuse_kernels(legalize)   Relax from `to_relax` -> one PrimFunc per fused kernel, not yet
                             scheduled; `legalize` overrides TVM's legalization per Relax op
                             (the CPU's packed kernels: cpu/legalize.py; None: TVM's own)
    finish_for_vm(cuda_graph)  scheduled kernels -> VM code: memory planning (with TVM's
                             CUDA-graph capture of the planned allocations where asked)

Each target runs them around its own scheduling (cpu/build.py, cuda/pipeline.py,
mcu/kernels_c.py).
"""

from __future__ import annotations

import tvm
from tvm import relax


def fuse_kernels(legalize: dict | None = None) -> tvm.transform.Pass:
    """Relax module -> fused, legalized (not yet scheduled) kernels."""
    return tvm.transform.Sequential([
        relax.transform.DeadCodeElimination(),  # parts of a split nobody reads, before fusion
        relax.backend.DispatchSampling(),
        relax.backend.DispatchSortScan(),
        relax.transform.LegalizeOps(customize_legalize_map=legalize),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
        relax.transform.DeadCodeElimination(),
    ])


def finish_for_vm(cuda_graph: bool = False) -> tvm.transform.Pass:
    """Scheduled kernels -> a module the Relax VM runs."""
    capture = [relax.transform.RewriteCUDAGraph()] if cuda_graph else []
    return tvm.transform.Sequential([
        relax.transform.RewriteDataflowReshape(),
        relax.transform.ToNonDataflow(),
        relax.transform.RemovePurityChecking(),
        relax.transform.CallTIRRewrite(),
        relax.transform.StaticPlanBlockMemory(),
        *capture,
        relax.transform.LowerAllocTensor(),
        relax.transform.KillAfterLastUse(),
        relax.transform.LowerRuntimeBuiltin(),
        relax.transform.ComputePrimValue(),
        relax.transform.VMShapeLower(),
        relax.transform.AttachGlobalSymbol(),
    ])
