"""AVX-512 VNNI (`vpdpbusd`) as TVM tensor intrinsics, and whether a target has it.

One `vpdpbusd` updates L int32 lanes (L = 16, 8, 4 in a zmm, ymm, xmm register):

    C[l] += sum_{t < 4} int32(U[l, t]) * int32(S[l, t])     U: uint8, S: int8

Three shapes of it, each a registered intrinsic (description + implementation):
- `BROADCAST_X`: U is 4 bytes broadcast to every lane (one 32-bit broadcast), S an (L, 4)
  block, lane-major (the 4 bytes of lane l at 4l .. 4l + 3): L output channels of one pixel
  or row; the weight must be packed (..., L, 4) at compile time (int8_kernels.py), since an
  unpacked (N, K) weight is a strided window the block load would misread.
- `BROADCAST_W`: S is 4 weight bytes broadcast, U an (L, 4) block of activations: L output
  pixels of one channel, the activations packed 4 channels per pixel.
- window (`window_intrinsic`): U[l, t] = A[l s + t d], L overlapping 4-tap windows of one
  row (depthwise); one load and a `vpermb` (avx512vbmi) build the (L, 4) block.
Products are exact in int16 and the four-way sums in int32 (no saturation: that is
`vpdpbusds`), so the result is the exact int32 dot product, wrapping like any int32 sum.

TVM's bundled `dot_16x4_vnni` passes its operands as `<16 x i32>`, which LLVM 22's
`llvm.x86.avx512.vpdpbusd.512` (`<16 x i32>, <64 x i8>, <64 x i8>`) rejects at verification;
these reinterpret the operands as byte vectors. The accumulator C is a "global"-scope
buffer: the schedules' register tile (sched_int8.py says why not "local"). Intrinsics are
registered on first use (parsing their TVMScript takes ~0.3 s each).

`has_vnni(target)` asks LLVM whether the target's CPU (mcpu and features) has avx512vnni,
avx512vl and avx512bw; `has_vbmi` adds avx512vbmi. Without them schedules fall back to plain
int32 vector code.
"""

from __future__ import annotations

import tvm
from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T
from tvm.target import codegen

LLVM_DOT = {16: "llvm.x86.avx512.vpdpbusd.512", 8: "llvm.x86.avx512.vpdpbusd.256",
            4: "llvm.x86.avx512.vpdpbusd.128"}
#: lanes -> intrinsic with the uint8 activations broadcast, the int8 weights an (L, 4) block
BROADCAST_X = {n: f"smelt_vnni_{n}x4_bcast_u8" for n in LLVM_DOT}
#: lanes -> intrinsic with the int8 weights broadcast, the uint8 activations an (L, 4) block
BROADCAST_W = {n: f"smelt_vnni_{n}x4_bcast_s8" for n in LLVM_DOT}


def _intrinsic(lanes: int, broadcast_x: bool, impl: bool):
    """The description (impl False) or the implementation of one `vpdpbusd` whose uint8
    operand (broadcast_x) or int8 operand (not broadcast_x) is 4 bytes broadcast to all
    lanes, and the other an (L, 4) block."""
    acc_t, u8v, s8v = f"int32x{lanes}", f"uint8x{4 * lanes}", f"int8x{4 * lanes}"
    x_shape, w_shape = ((4,), (lanes, 4)) if broadcast_x else ((lanes, 4), (4,))
    llvm = LLVM_DOT[lanes]

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, x_shape, "uint8", offset_factor=1)
        B = T.match_buffer(b, w_shape, "int8", offset_factor=1)
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1, scope="global")
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:x_shape[0], 0:4] if not broadcast_x else A[0:4],
                    B[0:lanes, 0:4] if broadcast_x else B[0:4])
            T.writes(C[0:lanes])
            for i, k in T.grid(lanes, 4):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    if broadcast_x:
                        C[vi] = C[vi] + T.Cast("int32", A[vk]) * T.Cast("int32", B[vi, vk])
                    else:
                        C[vi] = C[vi] + T.Cast("int32", A[vi, vk]) * T.Cast("int32", B[vk])

    @T.prim_func(s_tir=True)
    def implementation(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, x_shape, "uint8", offset_factor=1)
        B = T.match_buffer(b, w_shape, "int8", offset_factor=1)
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1, scope="global")
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:x_shape[0], 0:4] if not broadcast_x else A[0:4],
                    B[0:lanes, 0:4] if broadcast_x else B[0:4])
            T.writes(C[0:lanes])
            if broadcast_x:
                C[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id(llvm), C.vload([0], dtype=acc_t),
                    T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "uint8x4"),
                                                            dtype="int32"), lanes), dtype=u8v),
                    B.vload([0, 0], dtype=s8v), dtype=acc_t)
            else:
                C[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id(llvm), C.vload([0], dtype=acc_t),
                    A.vload([0, 0], dtype=u8v),
                    T.reinterpret(T.broadcast(T.reinterpret(B.vload([0], "int8x4"),
                                                            dtype="int32"), lanes), dtype=s8v),
                    dtype=acc_t)

    return implementation if impl else desc


_REGISTERED: set[str] = set()


def intrinsic(lanes: int, broadcast_x: bool) -> str:
    """The name of the `vpdpbusd` intrinsic of `lanes` lanes (broadcasting the uint8 operand
    or the int8 one), registered with TVM on first use: parsing TVMScript costs ~0.3 s."""
    name = (BROADCAST_X if broadcast_x else BROADCAST_W)[lanes]
    if name not in _REGISTERED:
        TensorIntrin.register(name, _intrinsic(lanes, broadcast_x, False),
                              _intrinsic(lanes, broadcast_x, True), override=True)
        _REGISTERED.add(name)
    return name


LLVM_PERMUTE = {16: "llvm.x86.avx512.permvar.qi.512", 8: "llvm.x86.avx512.permvar.qi.256",
                4: "llvm.x86.avx512.permvar.qi.128"}


def window_fits(lanes: int, stride: int, dilation: int) -> bool:
    """Whether L windows of 4 taps (stride s, dilation d) lie in the 4L bytes one load reads."""
    return lanes in LLVM_PERMUTE and (lanes - 1) * stride + 3 * dilation < 4 * lanes


def _window(lanes: int, stride: int, dilation: int, impl: bool):
    """C[i] += sum_{k < 4} A[i s + k d] * B[k], i < L: L outputs of one row, each the dot
    product of its 4-tap window with 4 int8 weights (broadcast). The implementation loads
    4L bytes from A's start (past A's region: the caller leaves slack after its buffer),
    permutes them into the L windows (`vpermb`, index 4i + k -> i s + k d) and runs one
    `vpdpbusd`."""
    span = (lanes - 1) * stride + 3 * dilation + 1
    acc_t, u8v, s8v = f"int32x{lanes}", f"uint8x{4 * lanes}", f"int8x{4 * lanes}"
    dot, permute = LLVM_DOT[lanes], LLVM_PERMUTE[lanes]

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (span,), "uint8", offset_factor=1)
        B = T.match_buffer(b, (4,), "int8", offset_factor=1)
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1, scope="global")
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:span], B[0:4])
            T.writes(C[0:lanes])
            for i, k in T.grid(lanes, 4):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + T.Cast("int32", A[vi * stride + vk * dilation]) * T.Cast(
                        "int32", B[vk])

    @T.prim_func(s_tir=True)
    def implementation(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (span,), "uint8", offset_factor=1)
        B = T.match_buffer(b, (4,), "int8", offset_factor=1)
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1, scope="global")
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:span], B[0:4])
            T.writes(C[0:lanes])
            C[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(dot), C.vload([0], dtype=acc_t),
                T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id(permute), A.vload([0], dtype=u8v),
                    (T.Ramp(T.uint8(0), T.uint8(1), 4 * lanes) >> T.Broadcast(
                        T.uint8(2), 4 * lanes)) * T.Broadcast(T.uint8(stride), 4 * lanes)
                    + (T.Ramp(T.uint8(0), T.uint8(1), 4 * lanes) & T.Broadcast(
                        T.uint8(3), 4 * lanes)) * T.Broadcast(T.uint8(dilation), 4 * lanes),
                    dtype=u8v),
                T.reinterpret(T.broadcast(T.reinterpret(B.vload([0], "int8x4"), dtype="int32"),
                                          lanes), dtype=s8v),
                dtype=acc_t)

    return implementation if impl else desc


def window_intrinsic(lanes: int, stride: int, dilation: int) -> str:
    """The name of the 4-tap window intrinsic (see `_window`), registered on first use."""
    name = f"smelt_vnni_{lanes}x4_window_s{stride}_d{dilation}"
    if name not in _REGISTERED:
        TensorIntrin.register(name, _window(lanes, stride, dilation, False),
                              _window(lanes, stride, dilation, True), override=True)
        _REGISTERED.add(name)
    return name


def has_vbmi(target: tvm.target.Target | None = None) -> bool:
    """Whether `target` also has `vpermb` (avx512vbmi), which the window intrinsic needs."""
    target = target if target is not None else tvm.target.Target.current(allow_none=True)
    if not has_vnni(target):
        return False
    try:
        return bool(codegen.target_has_features(["avx512vbmi"], target))
    except Exception:  # an LLVM without this feature name
        return False


def has_vnni(target: tvm.target.Target | None = None) -> bool:
    """Whether `target` (default: the current one) can run `vpdpbusd` on zmm and ymm."""
    target = target if target is not None else tvm.target.Target.current(allow_none=True)
    if target is None or str(target.kind.name) != "llvm":
        return False
    try:
        return bool(codegen.target_has_features(["avx512vnni", "avx512vl", "avx512bw"],
                                                target))
    except Exception:  # a non-x86 triple or an LLVM without these feature names
        return False
