"""CONV and DECONV: im2col + one single-threaded sgemm per sample and group.

The pairs work on plain float32 arrays, flat (n, C, H, W) blocks: `conv_forward(out, inp,
weight, bias, col, C, H, W, O, Ho, Wo, kernel_h, ..., groups, lo, hi)` does samples [lo, hi),
with col a workspace for one group's column matrix; `conv_backward(dinp, dweight, dbias, dout,
inp, weight, col, dcol, ...)` accumulates the gradients of those samples. An empty `bias`
(`dbias`) means no bias, an empty `dinp` that nobody needs the input's gradient.
1x1 / stride-1 / unpadded convolutions use the input itself as the column matrix, and
depthwise convolutions (groups == C == O) are direct loops.

A transposed convolution (DECONV) is the adjoint of the convolution from its output (O, Ho, Wo)
to its input (C, H, W): forward is col = W^T x then col2im into y; backward is im2col of dy,
then dx += W col and dW += x col^T.

The row adapters split the batch into one contiguous chunk of samples per thread; chunk c owns
workspace slot c:  [col (K*P) | dcol (K*P) | dW (weight size) | db (O)].
Backward chunk 0 accumulates its weight gradients straight into G, the others into their slot,
summed into G after the parallel loop in a fixed order (results do not depend on scheduling).
"""

import numpy as np
from numba import njit

from cnnc.compiler import abi

from . import common
from .common import BETA0, BETA1, NOTR, TR, U, chunk, inp, nchunks, out, sgemm
from .config import JIT, RJIT

CONV_ROW = abi.int_offsets("CONV")
DECONV_ROW = abi.int_offsets("DECONV")


@njit(**JIT)
def _span(off, stride, size, n_out):
    """[lo, hi): the outputs o with 0 <= o * stride + off < size."""
    lo = min(max(-(off // stride), 0), n_out)  # ceil(-off / stride)
    hi = min(max(-((off - size) // stride), lo), n_out)  # ceil((size - off) / stride)
    return lo, hi


@njit(**JIT)
def im2col(x, xo, col, co, geom):
    """col[co:] as (C*kh*kw, Ho*Wo) = the receptive fields of x[xo:] as (C, H, W), zero padded.

    geom = (C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo).
    """
    C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo = geom
    r = co
    for c in range(C):
        xc = xo + c * H * W
        for i in range(kh):
            hlo, hhi = _span(i * dh - ph, sh, H, Ho)
            for j in range(kw):
                off = j * dw - pw
                lo, hi = _span(off, sw, W, Wo)
                if hlo > 0 or hhi < Ho or lo > 0 or hi < Wo:  # the window reaches padding
                    for q in range(r, r + Ho * Wo):
                        col[U(q)] = 0.0
                for oh in range(hlo, hhi):
                    d = r + oh * Wo
                    s = xc + (oh * sh - ph + i * dh) * W + off
                    for ow in range(lo, hi):
                        col[U(d + ow)] = x[U(s + ow * sw)]
                r += Ho * Wo


@njit(**JIT)
def col2im(col, co, x, xo, geom):
    """x[xo:] += the adjoint of im2col applied to col[co:]."""
    C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo = geom
    r = co
    for c in range(C):
        xc = xo + c * H * W
        for i in range(kh):
            hlo, hhi = _span(i * dh - ph, sh, H, Ho)
            for j in range(kw):
                off = j * dw - pw
                lo, hi = _span(off, sw, W, Wo)
                for oh in range(hlo, hhi):
                    d = r + oh * Wo
                    s = xc + (oh * sh - ph + i * dh) * W + off
                    for ow in range(lo, hi):
                        x[U(s + ow * sw)] += col[U(d + ow)]
                r += Ho * Wo


@njit(**JIT)
def _depthwise_forward(out, y, inp, x, weight, C, geom):
    """out[y:] += weight * inp[x:] for one sample of a depthwise conv on C channels."""
    _, H, W, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo = geom  # the geometry of one group
    for c in range(C):
        xc, yc = x + c * H * W, y + c * Ho * Wo
        for i in range(kh):
            hlo, hhi = _span(i * dh - ph, sh, H, Ho)
            for j in range(kw):
                off = j * dw - pw
                lo, hi = _span(off, sw, W, Wo)
                wv = weight[(c * kh + i) * kw + j]
                for oh in range(hlo, hhi):
                    d, s = yc + oh * Wo, xc + (oh * sh - ph + i * dh) * W + off
                    for ow in range(lo, hi):
                        out[U(d + ow)] += wv * inp[U(s + ow * sw)]


@njit(**RJIT)
def _depthwise_backward(dinp, dweight, dout, inp, weight, x, y, C, geom):
    """dweight += dout * inp and (dinp not empty) dinp += weight * dout for one sample of a
    depthwise conv, at offset x in inp and dinp, y in dout."""
    _, H, W, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo = geom
    need_dinp = dinp.size > 0
    for c in range(C):
        xc, yc = x + c * H * W, y + c * Ho * Wo
        for i in range(kh):
            hlo, hhi = _span(i * dh - ph, sh, H, Ho)
            for j in range(kw):
                off = j * dw - pw
                lo, hi = _span(off, sw, W, Wo)
                k = (c * kh + i) * kw + j
                wv, acc = weight[k], np.float32(0.0)
                for oh in range(hlo, hhi):
                    d, s = yc + oh * Wo, xc + (oh * sh - ph + i * dh) * W + off
                    for ow in range(lo, hi):
                        acc += dout[U(d + ow)] * inp[U(s + ow * sw)]
                    if need_dinp:
                        for ow in range(lo, hi):
                            dinp[U(s + ow * sw)] += wv * dout[U(d + ow)]
                dweight[k] += acc


@njit(**JIT)
def _add_bias(out, y, bias, O, HW):
    for o in range(O):
        v = bias[o]
        for p in range(y + o * HW, y + (o + 1) * HW):
            out[U(p)] += v


@njit(**RJIT)
def _bias_backward(dbias, dout, y, O, HW):
    for o in range(O):
        s = np.float32(0.0)
        for p in range(y + o * HW, y + (o + 1) * HW):
            s += dout[U(p)]
        dbias[o] += s


@njit(**JIT)
def _is_direct(kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w):
    """A 1x1, stride-1, unpadded window: the input is its own column matrix."""
    ones = kernel_h == 1 and kernel_w == 1 and stride_h == 1 and stride_w == 1
    return ones and pad_h == 0 and pad_w == 0


# ---------------------------------------------------------------------------------------- CONV
@njit(**JIT)
def conv_forward(
    out, inp, weight, bias, col,
    C, H, W, O, Ho, Wo, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
    dilation_h, dilation_w, groups, lo, hi,
):  # fmt: skip
    """Samples [lo, hi) of out (n, O, Ho, Wo) = inp (n, C, H, W) convolved with weight
    (O, C / groups, kernel_h, kernel_w), + bias (O,); col holds K * Ho * Wo floats,
    K = C / groups * kernel_h * kernel_w."""
    kh, kw, g = kernel_h, kernel_w, groups
    Cg, Og = C // g, O // g
    geom = (Cg, H, W, kh, kw, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, Ho, Wo)
    K, Pn, HW = Cg * kh * kw, Ho * Wo, H * W
    direct = _is_direct(kh, kw, stride_h, stride_w, pad_h, pad_w)
    pX, pY, pWt, pC = inp.ctypes.data, out.ctypes.data, weight.ctypes.data, col.ctypes.data
    for s in range(lo, hi):
        x, y = s * C * HW, s * O * Pn
        if g > 1 and Cg == 1 and Og == 1:
            out[y : y + O * Pn] = 0.0
            _depthwise_forward(out, y, inp, x, weight, C, geom)
        else:
            for q in range(g):
                b = pX + 4 * (x + q * Cg * HW)
                if not direct:
                    im2col(inp, x + q * Cg * HW, col, 0, geom)
                    b = pC
                yq = pY + 4 * (y + q * Og * Pn)
                sgemm(NOTR, NOTR, Og, Pn, K, pWt + 4 * (q * Og * K), K, b, Pn, yq, Pn, BETA0)
        if bias.size > 0:
            _add_bias(out, y, bias, O, Pn)


@njit(**JIT)
def conv_backward(
    dinp, dweight, dbias, dout, inp, weight, col, dcol,
    C, H, W, O, Ho, Wo, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
    dilation_h, dilation_w, groups, lo, hi,
):  # fmt: skip
    """Samples [lo, hi): dweight += dout col^T, dbias += dout summed over pixels and (dinp not
    empty) dinp += col2im(W^T dout); col and dcol hold K * Ho * Wo floats each."""
    kh, kw, g = kernel_h, kernel_w, groups
    Cg, Og = C // g, O // g
    geom = (Cg, H, W, kh, kw, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, Ho, Wo)
    K, Pn, HW = Cg * kh * kw, Ho * Wo, H * W
    direct = _is_direct(kh, kw, stride_h, stride_w, pad_h, pad_w)
    need_dinp = dinp.size > 0
    pX, pDX, pDY = inp.ctypes.data, dinp.ctypes.data, dout.ctypes.data
    pWt, pDW, pC, pDC = weight.ctypes.data, dweight.ctypes.data, col.ctypes.data, dcol.ctypes.data
    for s in range(lo, hi):
        x, y = s * C * HW, s * O * Pn
        if g > 1 and Cg == 1 and Og == 1:
            _depthwise_backward(dinp, dweight, dout, inp, weight, x, y, C, geom)
        else:
            for q in range(g):
                xq, dyq = x + q * Cg * HW, pDY + 4 * (y + q * Og * Pn)
                wq, dwq = pWt + 4 * (q * Og * K), pDW + 4 * (q * Og * K)
                b = pX + 4 * xq
                if not direct:
                    im2col(inp, xq, col, 0, geom)
                    b = pC
                sgemm(NOTR, TR, Og, K, Pn, dyq, Pn, b, Pn, dwq, K, BETA1)  # dW += dy col^T
                if not need_dinp:
                    continue
                if direct:  # dx += W^T dy
                    sgemm(TR, NOTR, K, Pn, Og, wq, K, dyq, Pn, pDX + 4 * xq, Pn, BETA1)
                else:  # dcol = W^T dy, dx += col2im(dcol)
                    sgemm(TR, NOTR, K, Pn, Og, wq, K, dyq, Pn, pDC, Pn, BETA0)
                    col2im(dcol, 0, dinp, xq, geom)
        if dbias.size > 0:
            _bias_backward(dbias, dout, y, O, Pn)


# -------------------------------------------------------------------------------------- DECONV
@njit(**JIT)
def deconv_forward(
    out, inp, weight, bias, col,
    C, H, W, O, Ho, Wo, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
    dilation_h, dilation_w, groups, lo, hi,
):  # fmt: skip
    """Samples [lo, hi) of out (n, O, Ho, Wo) = the transposed convolution of inp (n, C, H, W)
    with weight (C, O / groups, kernel_h, kernel_w), + bias (O,); col holds K * H * W floats,
    K = O / groups * kernel_h * kernel_w."""
    kh, kw, g = kernel_h, kernel_w, groups
    Cg, Og = C // g, O // g
    geom = (Og, Ho, Wo, kh, kw, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, H, W)
    K, Pn, HWo = Og * kh * kw, H * W, Ho * Wo  # the adjoint conv: geom maps out -> inp
    direct = _is_direct(kh, kw, stride_h, stride_w, pad_h, pad_w) and Pn == HWo
    pX, pY, pWt, pC = inp.ctypes.data, out.ctypes.data, weight.ctypes.data, col.ctypes.data
    for s in range(lo, hi):
        x, y = s * C * Pn, s * O * HWo
        if not direct:
            out[y : y + O * HWo] = 0.0
        for q in range(g):
            wq, xq = pWt + 4 * (q * Cg * K), pX + 4 * (x + q * Cg * Pn)
            if direct:  # y = W^T x
                yq = pY + 4 * (y + q * Og * HWo)
                sgemm(TR, NOTR, K, Pn, Cg, wq, K, xq, Pn, yq, Pn, BETA0)
            else:  # col = W^T x, y += col2im(col)
                sgemm(TR, NOTR, K, Pn, Cg, wq, K, xq, Pn, pC, Pn, BETA0)
                col2im(col, 0, out, y + q * Og * HWo, geom)
        if bias.size > 0:
            _add_bias(out, y, bias, O, HWo)


@njit(**JIT)
def deconv_backward(
    dinp, dweight, dbias, dout, inp, weight, col,
    C, H, W, O, Ho, Wo, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
    dilation_h, dilation_w, groups, lo, hi,
):  # fmt: skip
    """Samples [lo, hi): col = im2col(dout), dweight += inp col^T, dbias += dout summed over
    pixels and (dinp not empty) dinp += W col; col holds K * H * W floats."""
    kh, kw, g = kernel_h, kernel_w, groups
    Cg, Og = C // g, O // g
    geom = (Og, Ho, Wo, kh, kw, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, H, W)
    K, Pn, HWo = Og * kh * kw, H * W, Ho * Wo
    direct = _is_direct(kh, kw, stride_h, stride_w, pad_h, pad_w) and Pn == HWo
    need_dinp = dinp.size > 0
    pX, pDX, pDY = inp.ctypes.data, dinp.ctypes.data, dout.ctypes.data
    pWt, pDW, pC = weight.ctypes.data, dweight.ctypes.data, col.ctypes.data
    for s in range(lo, hi):
        x, y = s * C * Pn, s * O * HWo
        for q in range(g):
            b = pDY + 4 * (y + q * Og * HWo)
            if not direct:
                im2col(dout, y + q * Og * HWo, col, 0, geom)
                b = pC
            wq, xq = pWt + 4 * (q * Cg * K), pX + 4 * (x + q * Cg * Pn)
            sgemm(NOTR, TR, Cg, K, Pn, xq, Pn, b, Pn, pDW + 4 * (q * Cg * K), K, BETA1)
            if need_dinp:
                dxq = pDX + 4 * (x + q * Cg * Pn)
                sgemm(NOTR, NOTR, Cg, Pn, K, wq, K, b, Pn, dxq, Pn, BETA1)
        if dbias.size > 0:
            _bias_backward(dbias, dout, y, O, HWo)


# ------------------------------------------------------------------------------- row adapters
def _dims(row):
    """The pair's dimensions, C .. groups, from a CONV or DECONV row (ROW bound per kind)."""
    _, _, C, H, Wd = inp(row, 0)
    _, _, O, Ho, Wo = out(row)
    return (
        C, H, Wd, O, Ho, Wo, row[ROW.kernel_h], row[ROW.kernel_w],  # noqa: F821 - bound by specialise
        row[ROW.stride_h], row[ROW.stride_w], row[ROW.pad_h], row[ROW.pad_w],  # noqa: F821
        row[ROW.dilation_h], row[ROW.dilation_w], row[ROW.groups],  # noqa: F821
    )  # fmt: skip


_conv_dims = common.specialise(_dims, "conv_dims", ROW=CONV_ROW)
_deconv_dims = common.specialise(_dims, "deconv_dims", ROW=DECONV_ROW)


@njit(**JIT)
def _conv_sizes(C, H, W, O, Ho, Wo, kernel_h, kernel_w, sh, sw, ph, pw, dh, dw, groups):
    """(K * P of one group's column matrix, weight count, macs per sample)."""
    K = C // groups * kernel_h * kernel_w
    return K * Ho * Wo, O * K, O * K * Ho * Wo


@njit(**JIT)
def _deconv_sizes(C, H, W, O, Ho, Wo, kernel_h, kernel_w, sh, sw, ph, pw, dh, dw, groups):
    K = O // groups * kernel_h * kernel_w
    return K * H * W, C * K, C * K * H * W


@njit(**JIT)
def _slots(W, ws, nch):
    """At most as many chunks as W has workspace slots (if threads grew since it was sized)."""
    if W.size < ws:
        raise ValueError("CONV/DECONV: the workspace W is smaller than row[WS]")
    return min(nch, W.size // ws)


@njit(**JIT)
def _chunk_grads(c, dweight, dbias, slot, at):
    """Where chunk c accumulates its weight gradients: G for chunk 0, else its workspace slot
    from `at` on (zeroed here), summed into G by _sum_slots."""
    if c == 0:
        return dweight, dbias
    m, nb = dweight.size, dbias.size
    slot[at : at + m + nb] = 0.0
    return slot[at : at + m], slot[at + m : at + m + nb]


@njit(**JIT)
def _sum_slots(grads, W, ws, at, nch):
    """grads += the weight gradients of chunks 1 .. nch - 1, in chunk order."""
    for t in range(1, nch):
        b = t * ws + at
        for i in range(grads.size):
            grads[i] += W[b + i]


@njit(**JIT)
def _conv_forward_chunk(c, nch, y, x, w, b, W, ws, kp, n, *dims):
    lo, hi = chunk(c, nch, n)
    conv_forward(y, x, w, b, W[c * ws : c * ws + kp], *dims, lo, hi)


@njit(**JIT)
def _deconv_forward_chunk(c, nch, y, x, w, b, W, ws, kp, n, *dims):
    lo, hi = chunk(c, nch, n)
    deconv_forward(y, x, w, b, W[c * ws : c * ws + kp], *dims, lo, hi)


@njit(**JIT)
def _conv_backward_chunk(c, nch, dx, dw, db, dy, x, w, W, ws, kp, n, *dims):
    lo, hi = chunk(c, nch, n)
    slot = W[c * ws : (c + 1) * ws]
    dw, db = _chunk_grads(c, dw, db, slot, 2 * kp)
    conv_backward(dx, dw, db, dy, x, w, slot[:kp], slot[kp : 2 * kp], *dims, lo, hi)


@njit(**JIT)
def _deconv_backward_chunk(c, nch, dx, dw, db, dy, x, w, W, ws, kp, n, *dims):
    lo, hi = chunk(c, nch, n)
    slot = W[c * ws : (c + 1) * ws]
    dw, db = _chunk_grads(c, dw, db, slot, 2 * kp)
    deconv_backward(dx, dw, db, dy, x, w, slot[:kp], *dims, lo, hi)


def _row_forward(A, P, G, S, W, row, frow, n, training, seed):
    dims = geometry(row)  # noqa: F821 - bound by specialise
    C, H, Wd, O, Ho, Wo = dims[:6]
    kp, m, macs = sizes(*dims)  # noqa: F821
    nb = O if row[ROW.bias] else 0  # noqa: F821
    x, y, wo, ws = row[abi.IN + abi.IN_OFF] * n, row[abi.OUT] * n, row[abi.PARAM], row[abi.WS]
    args = (
        A[y : y + n * O * Ho * Wo], A[x : x + n * C * H * Wd],
        P[wo : wo + m], P[wo + m : wo + m + nb], W, ws, kp, n, *dims,
    )  # fmt: skip
    run_forward(_slots(W, ws, nchunks(n * macs, n)), args)  # noqa: F821


def _row_backward(A, P, G, S, W, row, frow, n, training, seed):
    dims = geometry(row)  # noqa: F821 - bound by specialise
    C, H, Wd, O, Ho, Wo = dims[:6]
    kp, m, macs = sizes(*dims)  # noqa: F821
    nb = O if row[ROW.bias] else 0  # noqa: F821
    x, dx, dy = row[abi.IN + abi.IN_OFF] * n, row[abi.IN + abi.IN_DOFF], row[abi.DOUT] * n
    nx, ny, wo, ws = n * C * H * Wd, n * O * Ho * Wo, row[abi.PARAM], row[abi.WS]
    dinp = A[dx * n : dx * n + nx] if dx >= 0 else A[:0]
    nch = _slots(W, ws, nchunks(2 * n * macs, n))
    args = (
        dinp, G[wo : wo + m], G[wo + m : wo + m + nb], A[dy : dy + ny], A[x : x + nx],
        P[wo : wo + m], W, ws, kp, n, *dims,
    )  # fmt: skip
    run_backward(nch, args)  # noqa: F821
    _sum_slots(G[wo : wo + m + nb], W, ws, 2 * kp, nch)


def _adapters(kind: str, row, geometry, sizes, forward_chunk, backward_chunk):
    """A kind's (forward, backward) row adapters: the shared templates above, bound to its row
    offsets, its geometry and sizes, and runners of its chunk bodies."""
    name = kind.lower()
    bound = dict(
        ROW=row,
        geometry=geometry,
        sizes=sizes,
        run_forward=common.parallel_chunks(f"{name}_forward_chunks", forward_chunk),
        run_backward=common.parallel_chunks(f"{name}_backward_chunks", backward_chunk),
    )
    return (
        common.specialise(_row_forward, f"{name}_row_forward", **bound),
        common.specialise(_row_backward, f"{name}_row_backward", **bound),
    )


CONV = conv_row_forward, conv_row_backward = _adapters(
    "CONV", CONV_ROW, _conv_dims, _conv_sizes, _conv_forward_chunk, _conv_backward_chunk
)
DECONV = deconv_row_forward, deconv_row_backward = _adapters(
    "DECONV", DECONV_ROW, _deconv_dims, _deconv_sizes, _deconv_forward_chunk, _deconv_backward_chunk
)
