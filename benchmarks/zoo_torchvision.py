"""torchvision's classification models on a CPU-only torch, whose wheel of torchvision is a
CUDA build.

The fact. The package index here holds torchvision only as CUDA builds (0.28.0 for torch
2.13.0, the version it requires exactly). Its compiled operators, `torchvision/_C.so`, link
libtorch_cuda.so and libc10_cuda.so, which the CPU torch lacks, so torchvision's own
`extension._load_library("_C")` fails quietly and no `torchvision::*` operator exists. Then
`torchvision/_meta_registrations.py` registers fake kernels for `torchvision::nms` and
`torchvision::qnms` without asking whether they exist, and `import torchvision` raises
`RuntimeError: operator torchvision::nms does not exist`. Every transformers model imports
torchvision when it is installed (modeling_utils -> loss_utils -> image_utils), and timm
imports it always, so the whole venv breaks, not only the sweep.

The way through. Before torchvision is first imported, `define_missing_schemas` tries what
torchvision will try (load its `_C`). Where that fails, it defines the schemas of
torchvision's operators (read from the 0.28.0 wheel: `strings torchvision/_C.so | grep
"^torchvision::"`) with `torch.library.Library("torchvision", "DEF")`, with no kernels.
torchvision's fake-kernel registrations then find their operators and its import succeeds.
No classification model calls these operators (they are detection ops: nms, roi_align,
deform_conv2d, ...); calling one raises the dispatcher's NotImplementedError ("Could not run
'torchvision::nms' with arguments from the 'CPU' backend"), and torchvision.ops' Python
wrappers raise their own "Couldn't load custom C++ ops" first, since torchvision still knows
its `_C` did not load. Where `_C` loads (a CUDA torch, a CPU build of torchvision), nothing
is defined and nothing changes.

Two ways to use it:
- `import_torchvision()` (and `import_timm()`): call it instead of `import torchvision`;
  benchmarks/model_zoo.py does, so the sweep runs in any venv.
- `install_hook()`: a finder on `sys.meta_path` that runs `define_missing_schemas` the first
  time anything imports torchvision, then steps aside. `make setup` writes a one-line .pth
  file into the venv's site-packages that loads this file and calls it, so that transformers
  and timm import in every process of the venv. It imports nothing until torchvision is
  imported (no torch at interpreter start).

This file imports only the standard library at module level, for the .pth's sake.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

#: the operators of torchvision 0.28.0's _C.so, by name, with their schemas
SCHEMAS: dict[str, str] = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "box_iou_rotated": "box_iou_rotated(Tensor boxes1, Tensor boxes2) -> Tensor",
    "roi_align": ("roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt "
                  "pooled_height, SymInt pooled_width, int sampling_ratio, bool aligned) "
                  "-> Tensor"),
    "_roi_align_backward": (
        "_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, SymInt "
        "pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt "
        "height, SymInt width, int sampling_ratio, bool aligned) -> Tensor"),
    "qroi_align": ("qroi_align(Tensor input, Tensor rois, float input_scale, int "
                   "input_zero_point, float rois_scale, int rois_zero_point, float "
                   "spatial_scale, SymInt pooled_height, SymInt pooled_width, int "
                   "sampling_ratio, bool aligned) -> Tensor"),
    "roi_pool": ("roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt "
                 "pooled_height, SymInt pooled_width) -> (Tensor, Tensor)"),
    "_roi_pool_backward": (
        "_roi_pool_backward(Tensor grad, Tensor rois, Tensor argmax, float spatial_scale, "
        "SymInt pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, "
        "SymInt height, SymInt width) -> Tensor"),
    "ps_roi_align": ("ps_roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt "
                     "pooled_height, SymInt pooled_width, int sampling_ratio) "
                     "-> (Tensor, Tensor)"),
    "_ps_roi_align_backward": (
        "_ps_roi_align_backward(Tensor grad, Tensor rois, Tensor channel_mapping, float "
        "spatial_scale, SymInt pooled_height, SymInt pooled_width, int sampling_ratio, "
        "SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor"),
    "ps_roi_pool": ("ps_roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt "
                    "pooled_height, SymInt pooled_width) -> (Tensor, Tensor)"),
    "_ps_roi_pool_backward": (
        "_ps_roi_pool_backward(Tensor grad, Tensor rois, Tensor channel_mapping, float "
        "spatial_scale, SymInt pooled_height, SymInt pooled_width, SymInt batch_size, "
        "SymInt channels, SymInt height, SymInt width) -> Tensor"),
    "deform_conv2d": (
        "deform_conv2d(Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor bias, "
        "SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, "
        "SymInt dilation_w, SymInt groups, SymInt offset_groups, bool use_mask) -> Tensor"),
    "_deform_conv2d_backward": (
        "_deform_conv2d_backward(Tensor grad, Tensor input, Tensor weight, Tensor offset, "
        "Tensor mask, Tensor bias, SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt "
        "pad_w, SymInt dilation_h, SymInt dilation_w, SymInt groups, SymInt offset_groups, "
        "bool use_mask) -> (Tensor, Tensor, Tensor, Tensor, Tensor)"),
}

#: the Library holding the definitions (a Library's definitions die with it), or None
_LIBRARY: Any = None
#: what `define_missing_schemas` found: None before it ran
STATE: dict[str, Any] | None = None


def _extension_path() -> Path | None:
    """torchvision's `_C` library, found as torchvision finds it, without importing it."""
    spec = importlib.machinery.PathFinder.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        if (folder / f"_C{suffix}").exists():
            return folder / f"_C{suffix}"
    return None


def define_missing_schemas() -> dict[str, Any]:
    """Make `import torchvision` work where its `_C` cannot load (see the module docstring).

    Returns what it found: `{"extension": path or None, "loaded": bool, "error": str,
    "defined": [names]}`. Runs once; later calls return the first answer. Call it before
    torchvision is imported (afterwards it is too late, and it says so)."""
    global _LIBRARY, STATE
    if STATE is not None:
        return STATE
    import torch

    path = _extension_path()
    STATE = {"extension": None if path is None else str(path), "loaded": False, "error": "",
             "defined": []}
    if path is None:  # torchvision is not installed: nothing to do
        return STATE
    if hasattr(torch.ops.torchvision, "nms"):  # loaded, or defined by the venv's hook
        STATE["loaded"] = "torchvision" in sys.modules and _has_ops()
        return STATE
    if "torchvision" in sys.modules:
        STATE["error"] = "torchvision was imported before define_missing_schemas ran"
        return STATE
    try:
        torch.ops.load_library(str(path))
        STATE["loaded"] = True
        return STATE
    except OSError as e:  # the cause names the missing library (libtorch_cuda.so)
        STATE["error"] = " ".join(str(x).strip() for x in (e, e.__cause__) if x)
    _LIBRARY = torch.library.Library("torchvision", "DEF")
    for name, schema in SCHEMAS.items():
        if not hasattr(torch.ops.torchvision, name):
            _LIBRARY.define(schema)
            STATE["defined"].append(name)
    return STATE


def _has_ops() -> bool:
    return bool(sys.modules["torchvision"].extension._has_ops())


def import_torchvision() -> ModuleType:
    """`import torchvision`, after `define_missing_schemas`."""
    define_missing_schemas()
    return importlib.import_module("torchvision")


def import_timm() -> ModuleType:
    """`import timm` (which imports torchvision), after `define_missing_schemas`."""
    define_missing_schemas()
    return importlib.import_module("timm")


class _TorchvisionHook(importlib.abc.MetaPathFinder):
    """Runs `define_missing_schemas` when torchvision is first imported, then steps aside
    (finds nothing itself: the ordinary finders import torchvision)."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        if fullname == "torchvision":
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            define_missing_schemas()
        return None


def install_hook() -> None:
    """Put the finder first on `sys.meta_path` (once); for the venv's .pth file."""
    if "torchvision" in sys.modules or any(isinstance(f, _TorchvisionHook)
                                           for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _TorchvisionHook())


def pth_line(path: Path | None = None) -> str:
    """The one line of the .pth file `make setup` writes: load this file by its path (it is no
    installed module) into `sys.modules` once (its Library must live as long as the process;
    the .pth may be read twice, through a venv's lib64 -> lib) and install the hook; where
    the file is gone (another checkout), do nothing."""
    here = (path or Path(__file__)).resolve()
    return (f"import os, sys, importlib.util as u; p = {str(here)!r}; "
            "s = u.spec_from_file_location('smelt_zoo_torchvision', p); "
            "m = sys.modules.setdefault(s.name, u.module_from_spec(s)); "
            "m.__dict__.get('install_hook') or not os.path.exists(p) or s.loader.exec_module(m); "
            "getattr(m, 'install_hook', lambda: None)()")


if __name__ == "__main__":  # python benchmarks/zoo_torchvision.py: print the .pth line
    print(pth_line())
