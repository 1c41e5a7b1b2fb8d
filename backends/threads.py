"""The size of TVM's CPU thread pool.

TVM's runtime sizes its pool once, when the first parallel kernel runs: from the
TVM_NUM_THREADS environment variable if set, else from half of the hardware threads on x86
(it assumes hyper-threading). On a 2-core machine without SMT that is one thread, so every
parallel loop smelt schedules would run on half the machine. Before the pool exists, smelt
sizes it to the target's core count, unless the user has set TVM_NUM_THREADS (then theirs
holds). This reads no environment to decide what smelt does; it writes TVM's one setting.
"""

from __future__ import annotations

import os
import warnings

import tvm

_sized = False


def size_thread_pool(threads: int) -> int:
    """Ask for `threads` workers (before the pool's first use); the count TVM will use."""
    global _sized
    if not _sized and "TVM_NUM_THREADS" not in os.environ:
        os.environ["TVM_NUM_THREADS"] = str(max(1, int(threads)))
    _sized = True
    used = int(tvm.get_global_func("runtime.NumThreads")())
    if used != threads and os.environ.get("TVM_NUM_THREADS") == str(threads):
        warnings.warn(f"TVM's thread pool already runs {used} thread(s) (it was started before "
                      f"smelt could size it); compiled modules use {used}, not {threads}",
                      RuntimeWarning, stacklevel=3)
    return used
