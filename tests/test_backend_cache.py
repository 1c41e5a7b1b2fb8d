"""The compile caches: in memory within a process, on disk across processes."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

import smelt
from smelt.backends.build_cache import DiskCache, entry_key
from smelt.backends.recent import Recent


def _graph(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    return smelt.trace(model, (torch.randn(3, 8),))


def test_second_compile_is_served_from_memory() -> None:
    g = _graph(1)
    first = smelt.compile(g, "cpu")
    again = smelt.compile(smelt.trace(*_model_and_args(1)), "cpu")  # re-traced: same content
    assert again is first and again.cache == "memory"


def _model_and_args(seed: int):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    return model, (torch.randn(3, 8),)


def test_disk_cache_serves_a_new_process(tmp_path) -> None:
    g = _graph(2)
    built = smelt.compile(g, "cpu", cache_dir=tmp_path)
    assert built.cache == "built" and list(tmp_path.glob("*.so"))
    x = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    script = textwrap.dedent(f"""
        import numpy as np, torch, smelt
        from torch import nn
        torch.manual_seed(2)
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
        g = smelt.trace(model, (torch.randn(3, 8),))
        m = smelt.compile(g, "cpu", cache_dir={str(tmp_path)!r})
        x = np.load({str(tmp_path / "x.npy")!r})
        np.save({str(tmp_path / "y.npy")!r}, m(x)[0])
        print(m.cache, sorted(set(m.kernels.values())))
    """)
    np.save(tmp_path / "x.npy", x)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split()[0] == "disk", out.stdout + out.stderr
    assert "dense" in out.stdout  # the schedule record travels with the library
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), built(x)[0])


def test_a_corrupt_entry_is_rebuilt(tmp_path) -> None:
    cache = DiskCache(tmp_path)
    key = entry_key("g", "t", {})
    cache.path(key).write_bytes(b"not a library")
    cache.path(key).with_suffix(".json").write_text("{}")
    module, why = cache.load(key)
    assert module is None and "unreadable" in why
    assert not cache.path(key).exists()


def test_the_key_covers_target_and_options() -> None:
    base = entry_key("g", "llvm -mcpu=a", {"schedule": True})
    assert base != entry_key("g", "llvm -mcpu=b", {"schedule": True})
    assert base != entry_key("g", "llvm -mcpu=a", {"schedule": False})
    assert base != entry_key("h", "llvm -mcpu=a", {"schedule": True})


def test_memory_keeps_the_most_recently_used() -> None:
    kept = Recent(2)
    kept.put("a", 1)
    kept.put("b", 2)
    assert kept.get("a") == 1  # a is now the most recent
    kept.put("c", 3)
    assert "b" not in kept and kept.get("a") == 1 and kept.get("c") == 3 and len(kept) == 2


@pytest.mark.xdist_group("c_target")
def test_a_temporary_c_project_goes_with_its_module(monkeypatch) -> None:
    monkeypatch.setattr("smelt.backends.mcu.module._CACHE", Recent(1))
    module = smelt.compile(_graph(3), "c", board="host")
    project = module.project
    assert (project / "Makefile").is_file()
    smelt.compile(_graph(4), "c", board="host")  # pushes the first module out of the cache
    del module
    gc.collect()
    assert not project.exists()
