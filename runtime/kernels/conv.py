"""CONV and DECONV: im2col + one single-threaded sgemm per sample and group.

The batch is split into one contiguous chunk of samples per thread; chunk c owns workspace
slot c:  [col (K*P) | dcol (K*P) | dW (weight size) | db (O)].
Backward chunk 0 accumulates its weight gradients straight into G, the others into their slot,
summed into G after the parallel loop in a fixed order (results do not depend on scheduling).
1x1 / stride-1 / unpadded convolutions use the input itself as the column matrix, and
depthwise convolutions (groups == C == O) are direct loops.

A transposed convolution (DECONV) is the adjoint of the convolution from its output (O, Ho, Wo)
to its input (C, H, W): forward is col = W^T x then col2im into y; backward is im2col of dy,
then dx += W col and dW += x col^T.
"""

import numpy as np
from numba import njit, prange

from cnnc.compiler import abi

from .common import BETA0, BETA1, NOTR, TR, U, chunk, inp, nchunks, out, sgemm
from .config import JIT, PJIT
from .kinds import CONV


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
def _depthwise_fwd(A, P, x, y, wo, C, geom):
    """y = w * x for one sample of a depthwise conv on C channels (y zeroed first)."""
    _, H, W, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo = geom  # the geometry of one group
    for c in range(C):
        xc, yc = x + c * H * W, y + c * Ho * Wo
        for i in range(kh):
            hlo, hhi = _span(i * dh - ph, sh, H, Ho)
            for j in range(kw):
                off = j * dw - pw
                lo, hi = _span(off, sw, W, Wo)
                wv = P[wo + (c * kh + i) * kw + j]
                for oh in range(hlo, hhi):
                    d, s = yc + oh * Wo, xc + (oh * sh - ph + i * dh) * W + off
                    for ow in range(lo, hi):
                        A[U(d + ow)] += wv * A[U(s + ow * sw)]


@njit(**JIT)
def _depthwise_bwd(A, P, G, x, dx, dy, wo, gw, C, geom):
    """dW += dy * x and (dx >= 0) dx += w * dy for one sample of a depthwise conv."""
    _, H, W, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo = geom
    for c in range(C):
        xc, yc = c * H * W, c * Ho * Wo
        for i in range(kh):
            hlo, hhi = _span(i * dh - ph, sh, H, Ho)
            for j in range(kw):
                off = j * dw - pw
                lo, hi = _span(off, sw, W, Wo)
                k = (c * kh + i) * kw + j
                wv, acc = P[wo + k], np.float32(0.0)
                for oh in range(hlo, hhi):
                    d, s = dy + yc + oh * Wo, xc + (oh * sh - ph + i * dh) * W + off
                    for ow in range(lo, hi):
                        acc += A[U(d + ow)] * A[U(x + s + ow * sw)]
                    if dx >= 0:
                        for ow in range(lo, hi):
                            A[U(dx + s + ow * sw)] += wv * A[U(d + ow)]
                G[gw + k] += acc


@njit(**JIT)
def _add_bias(A, y, P, b, O, HW):
    for o in range(O):
        v = P[b + o]
        for p in range(y + o * HW, y + (o + 1) * HW):
            A[U(p)] += v


@njit(**JIT)
def _bias_grad(A, dy, G, gb, O, HW):
    for o in range(O):
        s = np.float32(0.0)
        for p in range(dy + o * HW, dy + (o + 1) * HW):
            s += A[U(p)]
        G[gb + o] += s


@njit(**JIT)
def _layout(row):
    """Sizes of one step: the geometry of the convolution im2col sees, and the gemm shapes."""
    _, _, C, H, W = inp(row, 0)
    _, _, O, Ho, Wo = out(row)
    a = abi.ATTR
    kh, kw, sh, sw, ph, pw, dh, dw, g = (
        row[a], row[a + 1], row[a + 2], row[a + 3], row[a + 4],
        row[a + 5], row[a + 6], row[a + 7], row[a + 8],
    )  # fmt: skip
    direct = kh == 1 and kw == 1 and sh == 1 and sw == 1 and ph == 0 and pw == 0
    return C, H, W, O, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw, g, row[a + 9] != 0, direct


# ---------------------------------------------------------------------------------------- CONV
@njit(**JIT)
def _conv_fwd(A, P, W, row, n, lo, hi, slot):
    C, H, Wd, O, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw, g, bias, direct = _layout(row)
    Cg, Og = C // g, O // g
    geom = (Cg, H, Wd, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo)
    K, Pn, HW = Cg * kh * kw, Ho * Wo, H * Wd
    wo = row[abi.PARAM]
    pA, pP, pW = A.ctypes.data, P.ctypes.data, W.ctypes.data
    for s in range(lo, hi):
        x, y = row[abi.IN + abi.IN_OFF] * n + s * C * HW, row[abi.OUT] * n + s * O * Pn
        if g > 1 and Cg == 1 and Og == 1:
            A[y : y + O * Pn] = 0.0
            _depthwise_fwd(A, P, x, y, wo, C, geom)
        else:
            for q in range(g):
                b = pA + 4 * (x + q * Cg * HW)
                if not direct:
                    im2col(A, x + q * Cg * HW, W, slot, geom)
                    b = pW + 4 * slot
                yq = pA + 4 * (y + q * Og * Pn)
                sgemm(NOTR, NOTR, Og, Pn, K, pP + 4 * (wo + q * Og * K), K, b, Pn, yq, Pn, BETA0)
        if bias:
            _add_bias(A, y, P, wo + O * K, O, Pn)


@njit(**JIT)
def _conv_bwd(A, P, G, W, row, n, lo, hi, slot, gw):
    """Samples [lo, hi): dx into A, dW and db into G[gw:] (the arena, or a workspace slot)."""
    C, H, Wd, O, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw, g, bias, direct = _layout(row)
    Cg, Og = C // g, O // g
    geom = (Cg, H, Wd, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo)
    K, Pn, HW = Cg * kh * kw, Ho * Wo, H * Wd
    wo, dxo = row[abi.PARAM], row[abi.IN + abi.IN_DOFF]
    pA, pP, pG, pW = A.ctypes.data, P.ctypes.data, G.ctypes.data, W.ctypes.data
    col, dcol = slot, slot + K * Pn
    for s in range(lo, hi):
        x, dx = row[abi.IN + abi.IN_OFF] * n + s * C * HW, dxo * n + s * C * HW
        dy = row[abi.DOUT] * n + s * O * Pn
        if g > 1 and Cg == 1 and Og == 1:
            _depthwise_bwd(A, P, G, x, dx if dxo >= 0 else -1, dy, wo, gw, C, geom)
        else:
            for q in range(g):
                xq, dyq = x + q * Cg * HW, pA + 4 * (dy + q * Og * Pn)
                wq, gwq = pP + 4 * (wo + q * Og * K), pG + 4 * (gw + q * Og * K)
                b = pA + 4 * xq
                if not direct:
                    im2col(A, xq, W, col, geom)
                    b = pW + 4 * col
                sgemm(NOTR, TR, Og, K, Pn, dyq, Pn, b, Pn, gwq, K, BETA1)  # dW += dy col^T
                if dxo < 0:
                    continue
                dxq = pA + 4 * (dx + q * Cg * HW)
                if direct:  # dx += W^T dy
                    sgemm(TR, NOTR, K, Pn, Og, wq, K, dyq, Pn, dxq, Pn, BETA1)
                else:  # dcol = W^T dy, dx += col2im(dcol)
                    sgemm(TR, NOTR, K, Pn, Og, wq, K, dyq, Pn, pW + 4 * dcol, Pn, BETA0)
                    col2im(W, dcol, A, dx + q * Cg * HW, geom)
        if bias:
            _bias_grad(A, dy, G, gw + O * K, O, Pn)


# -------------------------------------------------------------------------------------- DECONV
@njit(**JIT)
def _deconv_fwd(A, P, W, row, n, lo, hi, slot):
    C, H, Wd, O, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw, g, bias, direct = _layout(row)
    Cg, Og = C // g, O // g
    geom = (Og, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw, H, Wd)  # the adjoint conv: y -> x
    K, Pn, HWo = Og * kh * kw, H * Wd, Ho * Wo
    direct = direct and Pn == HWo
    wo = row[abi.PARAM]
    pA, pP, pW = A.ctypes.data, P.ctypes.data, W.ctypes.data
    for s in range(lo, hi):
        x, y = row[abi.IN + abi.IN_OFF] * n + s * C * Pn, row[abi.OUT] * n + s * O * HWo
        if not direct:
            A[y : y + O * HWo] = 0.0
        for q in range(g):
            wq, xq = pP + 4 * (wo + q * Cg * K), pA + 4 * (x + q * Cg * Pn)
            if direct:  # y = W^T x
                yq = pA + 4 * (y + q * Og * HWo)
                sgemm(TR, NOTR, K, Pn, Cg, wq, K, xq, Pn, yq, Pn, BETA0)
            else:  # col = W^T x, y += col2im(col)
                sgemm(TR, NOTR, K, Pn, Cg, wq, K, xq, Pn, pW + 4 * slot, Pn, BETA0)
                col2im(W, slot, A, y + q * Og * HWo, geom)
        if bias:
            _add_bias(A, y, P, wo + C * K, O, HWo)


@njit(**JIT)
def _deconv_bwd(A, P, G, W, row, n, lo, hi, slot, gw):
    C, H, Wd, O, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw, g, bias, direct = _layout(row)
    Cg, Og = C // g, O // g
    geom = (Og, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw, H, Wd)
    K, Pn, HWo = Og * kh * kw, H * Wd, Ho * Wo
    direct = direct and Pn == HWo
    wo, dxo = row[abi.PARAM], row[abi.IN + abi.IN_DOFF]
    pA, pP, pG, pW = A.ctypes.data, P.ctypes.data, G.ctypes.data, W.ctypes.data
    for s in range(lo, hi):
        x, dx = row[abi.IN + abi.IN_OFF] * n + s * C * Pn, dxo * n + s * C * Pn
        dy = row[abi.DOUT] * n + s * O * HWo
        for q in range(g):
            b = pA + 4 * (dy + q * Og * HWo)
            if not direct:
                im2col(A, dy + q * Og * HWo, W, slot, geom)
                b = pW + 4 * slot
            wq, xq = pP + 4 * (wo + q * Cg * K), pA + 4 * (x + q * Cg * Pn)
            sgemm(NOTR, TR, Cg, K, Pn, xq, Pn, b, Pn, pG + 4 * (gw + q * Cg * K), K, BETA1)
            if dxo >= 0:
                dxq = pA + 4 * (dx + q * Cg * Pn)
                sgemm(NOTR, NOTR, Cg, Pn, K, wq, K, b, Pn, dxq, Pn, BETA1)
        if bias:
            _bias_grad(A, dy, G, gw + C * K, O, HWo)


# ------------------------------------------------------------------------------- entry points
@njit(**JIT)
def _sizes(row):
    """(K, P, parameter count, macs per sample): one group's column matrix is K x P."""
    C, O, g = row[abi.IN + abi.IN_C], row[abi.OC], row[abi.ATTR + 8]
    kk = row[abi.ATTR] * row[abi.ATTR + 1]
    nb = O if row[abi.ATTR + 9] else 0
    if row[abi.KIND] == CONV:
        K, Pn = (C // g) * kk, row[abi.OH] * row[abi.OW]
        return K, Pn, O * K + nb, O * K * Pn
    K, Pn = (O // g) * kk, row[abi.IN + abi.IN_H] * row[abi.IN + abi.IN_W]
    return K, Pn, C * K + nb, C * K * Pn


@njit(**JIT)
def _slots(W, row, nch):
    """At most as many chunks as W has workspace slots (if threads grew since it was sized)."""
    if W.size < row[abi.WS]:
        raise ValueError("CONV/DECONV: the workspace W is smaller than row[WS]")
    return min(nch, W.size // row[abi.WS])


@njit(**JIT)
def _forward_chunk(c, nch, A, P, W, row, n):
    lo, hi = chunk(c, nch, n)
    if row[abi.KIND] == CONV:
        _conv_fwd(A, P, W, row, n, lo, hi, c * row[abi.WS])
    else:
        _deconv_fwd(A, P, W, row, n, lo, hi, c * row[abi.WS])


@njit(**JIT)
def _backward_chunk(c, nch, A, P, G, W, row, n):
    """Chunk 0 accumulates into G; chunk c > 0 into dW, db after its slot's col and dcol."""
    lo, hi = chunk(c, nch, n)
    slot = c * row[abi.WS]
    gw, dst = row[abi.PARAM], G
    if c > 0:
        K, Pn, m, _ = _sizes(row)
        gw, dst = slot + 2 * K * Pn, W
        W[gw : gw + m] = 0.0
    if row[abi.KIND] == CONV:
        _conv_bwd(A, P, dst, W, row, n, lo, hi, slot, gw)
    else:
        _deconv_bwd(A, P, dst, W, row, n, lo, hi, slot, gw)


@njit(**PJIT)
def forward(A, P, G, S, W, row, frow, n, training, seed):
    """CONV and DECONV: one chunk of samples per thread."""
    nch = _slots(W, row, nchunks(n * _sizes(row)[3], n))
    if nch == 1:
        _forward_chunk(np.int64(0), nch, A, P, W, row, n)
    else:
        for c in prange(nch):
            _forward_chunk(np.int64(c), nch, A, P, W, row, n)


@njit(**PJIT)
def backward(A, P, G, S, W, row, frow, n, training, seed):
    K, Pn, m, macs = _sizes(row)
    nch = _slots(W, row, nchunks(2 * n * macs, n))
    if nch == 1:
        _backward_chunk(np.int64(0), nch, A, P, G, W, row, n)
        return
    for c in prange(nch):
        _backward_chunk(np.int64(c), nch, A, P, G, W, row, n)
    go = row[abi.PARAM]
    for t in range(1, nch):  # the other chunks' weight gradients, in chunk order
        b = t * row[abi.WS] + 2 * K * Pn
        for i in range(m):
            G[go + i] += W[b + i]


conv_forward = deconv_forward = forward
conv_backward = deconv_backward = backward
