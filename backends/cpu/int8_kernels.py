"""smelt's int8 CPU kernels (TE) and the compile-time packing of their constant weights.

All contractions multiply uint8 activations by int8 weights into int32, the operand types of
`vpdpbusd` (vnni.py); schedules (sched_int8.py) find each anchor block by its name.

Zero points: the kernels run on the raw uint8 x, the zero point folded into the bias, and
int8 activations read as uint8 by the +128 trick (lowering/int8_sums.py derives both).

Layouts (L = 16, 8 or 4 lanes: one `vpdpbusd` of a zmm, ymm or xmm register):
- `smelt_qdense`: C[..., n] = sum_k X[..., k] * Wp[n // L, k // 4, n % L, k % 4], the weight
  (N, K) packed to (N / L, K / 4, L, 4): the (L, 4) block one instruction reads, 4 bytes of
  an X row broadcast. K is padded to a multiple of 4 (zero weights, so the padded x values do
  not matter), N to one of L (the surplus columns are sliced off after the bias).
- `smelt_i8pack`: NCHW -> (N, C' / 4, H + pads, s, W' / s, 4), s the horizontal stride:
  4 consecutive input channels of a pixel are one 32-bit word, and padded column c sits at
  [c % s, c // s], so the columns one output row reads at a kernel offset are contiguous
  for any stride. Spatial padding is x_zp, channel padding 0. The stage writes uint32
  words; the lowering views them as bytes (`R.memory.view`, no copy).
- `smelt_qconv2d` (groups = 1, pixel vectors): out[n, o, y, x] = sum over (g, ry, rx, t) of
  Xp[n, g, y sh + ry dh, (rx dw) % s, x + (rx dw) // s, t] * Wp[o, g, ry, rx, t], the weight
  OIHW packed to (O, C' / 4, KH, KW, 4). One instruction: L consecutive output pixels of one
  channel (L x 4 contiguous input bytes) times one channel's 4 weights (broadcast), so the
  int32 tile is NCHW already and the requantized row is stored as one vector. Used when 16
  divides the output row (or, for a stride-1 unpadded 1x1 conv, the flattened H x W: its
  packed input is then viewed as (N, C' / 4, 1, 1, H x W, 4), so a vector may span rows).
  `smelt_qconv2d_flat`: a pointwise conv whose flat image 16 does not divide, when
  `padded_pixels` takes it: the same over the image padded to whole vectors, then its first
  H x W pixels (`smelt_unflatten`), so the write-back stores rows of each channel.
- `smelt_qconv2d_cv` (groups = 1, channel vectors): the same input, the weight packed to
  (O' / L, C' / 4, KH, KW, L, 4) as the dense one: L output channels of one pixel per
  instruction, for output rows no lane count divides (O padded to a multiple of L).
- `smelt_i8pad` + `smelt_qdwconv4`: depthwise (groups = C, one output per channel) with
  KW <= 4, NCHW, rows rounded up to whole vectors (window_lanes; the surplus is sliced off
  in the epilogue): out[n, c, y, x] = sum over (ry, t < 4) of
  Xp[n, c, y sh + ry dh, x sw + t dw] * W4[c, ry, t], the weight padded to (C, KH, 4) with
  zeros, so each output's kernel row is a 4-tap window and L outputs of a row are one
  `vpdpbusd` after a `vpermb` gathers their windows from one load (vnni.py). The padded
  input carries slack rows and columns for the 4th tap and that load.
- `smelt_i8pad` + `smelt_qdwconv`: any other depthwise conv, int32 products of the
  x_zp-padded input and the int8 weight, vectorized along the output row.
- `smelt_qbmm` (qmatmul, two activations): the dense kernel per batch index, its int8
  operand packed at run time (`smelt_i8pack_b`, uint32 words viewed as bytes); with both
  zero points: sum (a - za)(b - zb) = sum ab - zb rowsum(a) - za colsum(b) + K za zb, the
  sums computed at run time (`smelt_i8sum_*`) and added in the epilogue (uint8 b becomes
  int8 b - 128, zb - 128)."""

from __future__ import annotations

import numpy as np
from tvm import te, tirx

from ..lowering.int8_sums import as_uint8

CHANNEL_GROUP = 4  # bytes one vpdpbusd lane sums
WINDOW_ATTR = "smelt.window_steps"  # (sh, dh, sw, dw) of smelt_qdwconv4, for its schedule


def round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def is_pointwise(kernel_hw, stride, pads) -> bool:
    """A 1x1 conv with stride 1 and no padding: output pixel (y, x) reads input pixel (y, x),
    so the kernel may run over the flattened pixels y * W + x."""
    return tuple(kernel_hw) == (1, 1) and tuple(stride) == (1, 1) and not any(pads)


def pixel_lanes(pixels: int) -> int | None:
    """16 when it divides a row of `pixels` outputs, else None. Narrower pixel vectors lose
    to channel vectors (measured: 8x8 and 4x4 3x3 convs, 10x10 1x1 convs)."""
    return 16 if pixels % 16 == 0 else None


def padded_pixels(pixels: int, reduced: int) -> int | None:
    """For a pointwise conv whose flat image no vector length divides: the flat length rounded
    up to whole 16-pixel vectors, or None to keep channel vectors (`smelt_qconv2d_cv`).
    Channel vectors store each output byte by byte into NCHW, which costs most where the sum
    per output is short; padded pixel vectors compute the surplus and broadcast a weight word
    per channel. Measured on MobileNetV2's 10x10 and 5x5 1x1 convs, pixel vectors win with
    `reduced` (input channels) <= 128 and a surplus <= 1/8 of the image (64 -> 384 at 10x10:
    29 -> 26 us; 96 -> 576: 52 -> 48 us) and lose otherwise (384 -> 64: 25 -> 28 us; any 5x5,
    28% surplus: 31 -> 52 us for 960 -> 160). One register tile holds every vector."""
    padded = round_up(pixels, 16)
    if (pixels % 16 == 0 or reduced > 128 or 8 * (padded - pixels) > pixels
            or padded // 16 > 15):
        return None
    return padded


# -- compile-time packing (numpy) ----------------------------------------------------------
def pack_dense_weight(w: np.ndarray, lanes: int) -> np.ndarray:
    """(N, K) int8 -> (N' / L, K' / 4, L, 4), N' and K' padded with zero weights."""
    n, k = w.shape
    n2, k2 = round_up(n, lanes), round_up(k, CHANNEL_GROUP)
    wz = np.zeros((n2, k2), np.int8)
    wz[:n, :k] = w
    return np.ascontiguousarray(wz.reshape(n2 // lanes, lanes, k2 // 4, 4).transpose(0, 2, 1, 3))


def pack_conv_weight(w: np.ndarray) -> np.ndarray:
    """OIHW int8 -> (O, C' / 4, KH, KW, 4), C' padded with zero weights."""
    o, c, kh, kw = w.shape
    c2 = round_up(c, CHANNEL_GROUP)
    wz = np.zeros((o, c2, kh, kw), np.int8)
    wz[:, :c] = w
    return np.ascontiguousarray(wz.reshape(o, c2 // 4, 4, kh, kw).transpose(0, 1, 3, 4, 2))


def pack_conv_weight_blocked(w: np.ndarray, lanes: int) -> np.ndarray:
    """OIHW int8 -> (O' / L, C' / 4, KH, KW, L, 4), O' and C' padded with zero weights."""
    o, c, kh, kw = w.shape
    o2, c2 = round_up(o, lanes), round_up(c, CHANNEL_GROUP)
    wz = np.zeros((o2, c2, kh, kw), np.int8)
    wz[:o, :c] = w
    blocks = wz.reshape(o2 // lanes, lanes, c2 // 4, 4, kh, kw)
    return np.ascontiguousarray(blocks.transpose(0, 2, 4, 5, 1, 3))


# -- activation stages ---------------------------------------------------------------------
def pad_k(x: te.Tensor, k_padded: int) -> te.Tensor:
    """X[..., K] (uint8 or int8) -> uint8 X[..., K'], zero-extended to K' >= K."""
    k = int(x.shape[-1])
    lead = [int(d) for d in x.shape[:-1]]
    zero = tirx.const(0, "uint8")

    def body(*idx):
        *m, j = idx
        return tirx.if_then_else(j < k, as_uint8(x[(*m, tirx.min(j, k - 1))], x.dtype), zero)

    return te.compute((*lead, k_padded), body, name="smelt_i8pack_k")


def pack_conv_input(x: te.Tensor, pads: tuple[int, int, int, int], zp: int,
                    stride_w: int) -> te.Tensor:
    """NCHW (uint8 or int8) -> uint32 words (N, C' / 4, H + t + b, s, W' / s) (s = stride_w,
    W' = W + l + r rounded up to s), each word the 4 uint8 channel values of a pixel, the
    first in the low byte; x_zp (the uint8 zero point) outside the image, 0 in the padded
    channels. Viewed as uint8 (..., 4) (little-endian) it is the packed layout; building
    words lets a vector write 16 pixels' channels at once."""
    n, c, h, w = (int(d) for d in x.shape)
    t, left, bot, right = pads
    cb = round_up(c, CHANNEL_GROUP) // CHANNEL_GROUP
    cols = round_up(w + left + right, stride_w) // stride_w

    padded = any(pads) or cols * stride_w != w

    def body(b, g, y, phase, col):
        z = col * stride_w + phase
        inside = tirx.all(y >= t, y < h + t, z >= left, z < w + left)
        word = tirx.const(0, "uint32")
        for t4 in range(CHANNEL_GROUP):
            ch = g * CHANNEL_GROUP + t4
            if not padded:  # every word inside the image: plain loads (they vectorize)
                v = as_uint8(x[b, tirx.min(ch, c - 1), y, z], x.dtype).astype("uint32")
            else:
                v = as_uint8(x[b, tirx.min(ch, c - 1), tirx.min(tirx.max(y - t, 0), h - 1),
                               tirx.min(tirx.max(z - left, 0), w - 1)], x.dtype)
                v = tirx.if_then_else(inside, v.astype("uint32"), tirx.const(zp, "uint32"))
            if c % CHANNEL_GROUP:
                v = tirx.if_then_else(ch < c, v, tirx.const(0, "uint32"))
            word = word | (v << tirx.const(8 * t4, "uint32"))
        return word

    return te.compute((n, cb, h + t + bot, stride_w, cols), body, name="smelt_i8pack")


def window_slack(pads, in_hw, out_hw, stride, dilation, lanes: int) -> tuple[int, int]:
    """(rows, columns) of padding `qdwconv_window` needs beyond the conv's own: columns for
    the 4th tap of a 3-tap window, rows for the 4L bytes its last vector load reads."""
    width = in_hw[1] + pads[1] + pads[3]
    cols = max(0, (out_hw[1] - 1) * stride[1] + 3 * dilation[1] + 1 - width)
    return -(-4 * lanes // (width + cols)), cols


def window_lanes(width: int) -> tuple[int, int]:
    """(L, W') for a depthwise row of `width` outputs: 16 or 8 when it divides the row,
    else the widest L whose whole vectors cover the row without computing more than 3/2
    of it (W' = width rounded up to L)."""
    for lanes in (16, 8):
        if width % lanes == 0:
            return lanes, width
    for lanes in (16, 8, 4):
        if round_up(width, lanes) * 2 <= width * 3:
            return lanes, round_up(width, lanes)
    return 4, round_up(width, 4)


def pack_window_weight(w: np.ndarray) -> np.ndarray:
    """Depthwise (C, 1, KH, KW <= 4) int8 -> (C, KH, 4), taps beyond KW zero."""
    c, _, kh, kw = w.shape
    out = np.zeros((c, kh, 4), np.int8)
    out[:, :, :kw] = w[:, 0]
    return out


# -- contractions --------------------------------------------------------------------------
def _mac(a: tirx.PrimExpr, b: tirx.PrimExpr) -> tirx.PrimExpr:
    return a.astype("int32") * b.astype("int32")


def qdense(x: te.Tensor, wp: te.Tensor, n_out: int) -> te.Tensor:
    """uint8 X[..., K'] x packed int8 weight -> int32 C[..., n_out'] (n_out' = N' of wp)."""
    blocks, kg, lanes, _ = (int(d) for d in wp.shape)
    lead = [int(d) for d in x.shape[:-1]]
    k = te.reduce_axis((0, kg * CHANNEL_GROUP), "k")

    def body(*idx):
        *m, j = idx
        return te.sum(_mac(x[(*m, k)], wp[j // lanes, k // 4, j % lanes, k % 4]), axis=k)

    return te.compute((*lead, blocks * lanes), body, name="smelt_qdense")


def _input_at(xq: te.Tensor, b, g, y, x, ry, rx, t, stride, dilation, width: int):
    """The packed input (pack_conv_input) under output pixel (y, x), kernel tap (ry, rx).
    A pointwise conv's input may come flattened, (N, C' / 4, 1, 1, H x W, 4)."""
    sh, sw = stride
    dh, dw = dilation
    if int(xq.shape[2]) == 1 and int(xq.shape[3]) == 1 and int(xq.shape[4]) != width:
        return xq[b, g, 0, 0, y * width + x, t]
    return xq[b, g, y * sh + ry * dh, (rx * dw) % sw, x + (rx * dw) // sw, t]


def qconv2d(xq: te.Tensor, wp: te.Tensor, out_hw: tuple[int, int], stride, dilation) -> te.Tensor:
    """Packed uint8 input x (O, C' / 4, KH, KW, 4) int8 weight -> int32 NCHW."""
    n = int(xq.shape[0])
    o, cb, kh, kw, _ = (int(d) for d in wp.shape)
    g = te.reduce_axis((0, cb), "g")
    ry = te.reduce_axis((0, kh), "ry")
    rx = te.reduce_axis((0, kw), "rx")
    t = te.reduce_axis((0, CHANNEL_GROUP), "t")

    def body(b, oc, y, x):
        xv = _input_at(xq, b, g, y, x, ry, rx, t, stride, dilation, out_hw[1])
        return te.sum(_mac(xv, wp[oc, g, ry, rx, t]), axis=[g, ry, rx, t])

    return te.compute((n, o, *out_hw), body, name="smelt_qconv2d")


def qconv2d_flat(xq: te.Tensor, wp: te.Tensor, out_hw: tuple[int, int]) -> te.Tensor:
    """A pointwise conv over a flat image padded to P = `padded_pixels` pixels: packed uint8
    (N, C' / 4, 1, 1, P, 4) -> int32 NCHW, `qconv2d` over (1, P) and then the first H x W
    pixels (`smelt_unflatten`, which the schedule runs per tile, as the write-back)."""
    h, w = out_hw
    y = qconv2d(xq, wp, (1, int(xq.shape[4])), (1, 1), (1, 1))
    return te.compute((int(y.shape[0]), int(y.shape[1]), h, w),
                      lambda b, c, yy, xx: y[b, c, 0, yy * w + xx],
                      name="smelt_unflatten")


def qconv2d_cv(xq: te.Tensor, wp: te.Tensor, out_hw: tuple[int, int], stride,
               dilation) -> te.Tensor:
    """Packed uint8 input x (O' / L, C' / 4, KH, KW, L, 4) int8 weight -> int32 NCHW with
    O' = blocks x L channels."""
    n = int(xq.shape[0])
    blocks, cb, kh, kw, lanes, _ = (int(d) for d in wp.shape)
    g = te.reduce_axis((0, cb), "g")
    ry = te.reduce_axis((0, kh), "ry")
    rx = te.reduce_axis((0, kw), "rx")
    t = te.reduce_axis((0, CHANNEL_GROUP), "t")

    def body(b, o, y, x):
        xv = _input_at(xq, b, g, y, x, ry, rx, t, stride, dilation, out_hw[1])
        return te.sum(_mac(xv, wp[o // lanes, g, ry, rx, o % lanes, t]), axis=[g, ry, rx, t])

    return te.compute((n, blocks * lanes, *out_hw), body, name="smelt_qconv2d_cv")


def qdwconv(xp: te.Tensor, w: te.Tensor, out_hw: tuple[int, int], stride, dilation) -> te.Tensor:
    """x_zp-padded uint8 NCHW x int8 (C, 1, KH, KW) -> int32 NCHW (groups = C)."""
    n, c = int(xp.shape[0]), int(xp.shape[1])
    kh, kw = int(w.shape[2]), int(w.shape[3])
    sh, sw = stride
    dh, dw = dilation
    ry = te.reduce_axis((0, kh), "ry")
    rx = te.reduce_axis((0, kw), "rx")

    def body(b, ch, y, x):
        return te.sum(_mac(xp[b, ch, y * sh + ry * dh, x * sw + rx * dw], w[ch, 0, ry, rx]),
                      axis=[ry, rx])

    return te.compute((n, c, *out_hw), body, name="smelt_qdwconv")


def qdwconv_window(xp: te.Tensor, w4: te.Tensor, out_hw: tuple[int, int], stride,
                   dilation) -> te.Tensor:
    """Depthwise on rows of 4-tap windows: padded uint8 NCHW (with `window_slack`) x int8
    (C, KH, 4) -> int32 NCHW; out[n, c, y, x] = sum over (ry, t < 4) of
    Xp[n, c, y sh + ry dh, x sw + t dw] * W4[c, ry, t]."""
    n, c = int(xp.shape[0]), int(xp.shape[1])
    kh = int(w4.shape[1])
    sh, sw = stride
    dh, dw = dilation
    ry = te.reduce_axis((0, kh), "ry")
    t = te.reduce_axis((0, CHANNEL_GROUP), "t")

    def body(b, ch, y, x):
        return te.sum(_mac(xp[b, ch, y * sh + ry * dh, x * sw + t * dw], w4[ch, ry, t]),
                      axis=[ry, t])

    return te.compute((n, c, *out_hw), body, name="smelt_qdwconv4",
                      attrs={WINDOW_ATTR: [sh, dh, sw, dw]})


# -- qmatmul: two activations ----------------------------------------------------------------
def as_int8(v: tirx.PrimExpr, dtype: str) -> tirx.PrimExpr:
    """An int8 or uint8 value (of `dtype`) as int8: uint8 gets -128 (x ^ 0x80)."""
    if dtype == "int8":
        return v
    return (v.astype("int32") - 128).astype("int8")


def pack_matmul_rhs(b: te.Tensor, k_padded: int, lanes: int) -> te.Tensor:
    """B[..., K, N] (int8, or uint8 - 128) -> uint32 words (..., N' / L, K' / 4, L) at run
    time, each the 4 int8 values B[4g .. 4g + 3, n] (low byte first): viewed as int8
    (..., 4) it is the layout `qbmm` reads. Zero beyond K and N."""
    *batch, k, n = (int(d) for d in b.shape)
    blocks = round_up(n, lanes) // lanes

    def body(*idx):
        *bt, j, g, lane = idx
        nn = j * lanes + lane
        word = tirx.const(0, "uint32")
        for t in range(CHANNEL_GROUP):
            kk = g * CHANNEL_GROUP + t
            v = as_int8(b[(*bt, tirx.min(kk, k - 1), tirx.min(nn, n - 1))], b.dtype)
            v = tirx.if_then_else(tirx.all(kk < k, nn < n), v, tirx.const(0, "int8"))
            word = word | (v.astype("uint8").astype("uint32") << tirx.const(8 * t, "uint32"))
        return word

    return te.compute((*batch, blocks, k_padded // 4, lanes), body, name="smelt_i8pack_b")


def matmul_row_terms(a: te.Tensor, k: int, za: int, zb: int) -> te.Tensor:
    """K za zb - zb sum_k A[..., m, k] as int32 (..., M, 1), A uint8 (zero-padded in k)."""
    *lead, m, kp = (int(d) for d in a.shape)
    r = te.reduce_axis((0, kp), "r")
    s = te.compute((*lead, m, 1), lambda *i: te.sum(a[(*i[:-1], r)].astype("int32"), axis=r),
                   name="smelt_i8sum_rows")
    return te.compute(s.shape, lambda *i: tirx.const(k * za * zb, "int32") - s(*i) * zb,
                      name="smelt_i8sum_rows_term")


def matmul_col_terms(b: te.Tensor, n_padded: int, za: int) -> te.Tensor:
    """-za sum_k B'[..., k, n] as int32 (..., 1, N'), B' = B (int8) or B - 128 (uint8)."""
    *batch, k, n = (int(d) for d in b.shape)
    r = te.reduce_axis((0, k), "r")

    def body(*idx):
        *bt, _, j = idx
        v = as_int8(b[(*bt, r, tirx.min(j, n - 1))], b.dtype).astype("int32")
        return te.sum(tirx.if_then_else(j < n, v, tirx.const(0, "int32")), axis=r)

    s = te.compute((*batch, 1, n_padded), body, name="smelt_i8sum_cols")
    return te.compute(s.shape, lambda *i: s(*i) * (-za), name="smelt_i8sum_cols_term")


def qbmm(a: te.Tensor, bp: te.Tensor, batch: tuple[int, ...]) -> te.Tensor:
    """uint8 A[..., M, K'] x packed int8 B' -> int32 C[batch..., M, N'], numpy broadcasting
    over the batch axes (A's and B's batch axes align right)."""
    m, kp = int(a.shape[-2]), int(a.shape[-1])
    blocks, lanes = int(bp.shape[-4]), int(bp.shape[-2])
    k = te.reduce_axis((0, kp), "k")

    def at(t: te.Tensor, bt, rank: int):
        off = len(batch) - rank
        return [0 if int(t.shape[i]) == 1 else bt[off + i] for i in range(rank)]

    def body(*idx):
        *bt, i, j = idx
        av = a[(*at(a, bt, len(a.shape) - 2), i, k)]
        bv = bp[(*at(bp, bt, len(bp.shape) - 4), j // lanes, k // 4, j % lanes, k % 4)]
        return te.sum(_mac(av, bv), axis=k)

    return te.compute((*batch, m, blocks * lanes), body, name="smelt_qbmm")
