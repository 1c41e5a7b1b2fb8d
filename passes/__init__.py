"""smelt.passes: the rule families and passes that ship with smelt. Importing this package
registers them (see `smelt.rewrite.registry`):

- `canonicalize`: algebraic identities and no-op removal (identities.py) and constant
  folding (constant_folding.py); exact;
- `fuse`: matmul + bias + relu/relu6 into fused_matmul (fusion.py); exact.
"""

from smelt.rewrite.pass_api import RewritePass
from smelt.rewrite.registry import register_pass, register_rules

from . import identities
from .batchnorm_folding import FOLD_BN, fold_batch_norm
from .constant_folding import FOLD_CONSTANTS
from .equalization import equalize_weights
from .fusion import FUSE, fuse
from .identities import IDENTITIES

CANONICALIZE = IDENTITIES + FOLD_CONSTANTS
register_rules(CANONICALIZE)


def canonicalize(budget: int | None = None) -> RewritePass:
    """Algebraic identities, no-op removal and constant folding (exact)."""
    return RewritePass("canonicalize", CANONICALIZE, budget=budget, doc=identities.__doc__ or "")


register_pass("canonicalize", canonicalize)

__all__ = ["CANONICALIZE", "FOLD_CONSTANTS", "FUSE", "IDENTITIES", "canonicalize", "fuse"]
__all__ += ["FOLD_BN", "equalize_weights", "fold_batch_norm"]

from . import awq, pack_int4, qdq_legality, quantize, smoothing, smoothquant  # noqa: E402,F401
from .fold_qdq import FOLD_QDQ  # noqa: E402

__all__ += ["FOLD_QDQ"]
from . import pruning, sparsity24  # noqa: E402,F401  (prune-channels, sparsify-24, pack-24)
