"""CONV and DECONV: im2col + one single-threaded sgemm per sample and group.

Samples are split into one contiguous chunk per thread; chunk c owns workspace slot c:
    [col (K*P) | dcol (K*P) | dW (weight size) | db (O)]
Chunk 0 accumulates its weight gradients straight into G, the others into their private dW/db,
which are summed into G after the parallel loop (a fixed order: results do not depend on
scheduling). 1x1/stride-1/unpadded convolutions use the input as the column matrix, and
depthwise convolutions (groups == C == O) are direct loops.
"""

import numpy as np
from cnnc.compiler import abi
from numba import njit, prange

from .common import NOTR, TR, chunk, inp, nchunks, out, sgemm
from .config import JIT, PJIT


@njit(**JIT)
def _span(off, stride, size, n_out):
    """[lo, hi): the outputs o with 0 <= o * stride + off < size."""
    lo = min(max(-(off // stride), 0), n_out)  # ceil(-off / stride)
    hi = min(max(-((off - size) // stride), lo), n_out)  # ceil((size - off) / stride)
    return lo, hi


@njit(**JIT)
def im2col(x, xo, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo, col, co):
    """col[co:] as (C*kh*kw, Ho*Wo) = the receptive fields of x[xo:] as (C, H, W); zero padding."""
    r = co
    for c in range(C):
        xc = xo + c * H * W
        for i in range(kh):
            hlo, hhi = _span(i * dh - ph, sh, H, Ho)
            for j in range(kw):
                off = j * dw - pw
                lo, hi = _span(off, sw, W, Wo)
                col[r : r + hlo * Wo] = 0.0
                for oh in range(hlo, hhi):
                    d = r + oh * Wo
                    s = xc + (oh * sh - ph + i * dh) * W + off
                    col[d : d + lo] = 0.0
                    for ow in range(lo, hi):
                        col[d + ow] = x[s + ow * sw]
                    col[d + hi : d + Wo] = 0.0
                col[r + hhi * Wo : r + Ho * Wo] = 0.0
                r += Ho * Wo


@njit(**JIT)
def col2im(col, co, x, xo, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo):
    """x[xo:] += the adjoint of im2col applied to col[co:]."""
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
                        x[s + ow * sw] += col[d + ow]
                r += Ho * Wo


@njit(**JIT)
def _attrs(row):
    a = abi.ATTR
    return (
        row[a],
        row[a + 1],
        row[a + 2],
        row[a + 3],
        row[a + 4],
        row[a + 5],
        row[a + 6],
        row[a + 7],
        row[a + 8],
        row[a + 9],
    )


@njit(**JIT)
def _add_bias(A, yo, P, bo, O, HW):
    for o in range(O):
        b = P[bo + o]
        for p in range(yo + o * HW, yo + (o + 1) * HW):
            A[p] += b


@njit(**JIT)
def _bias_grad(A, dyo, G, go, O, HW):
    for o in range(O):
        s = np.float32(0.0)
        for p in range(dyo + o * HW, dyo + (o + 1) * HW):
            s += A[p]
        G[go + o] += s


# ---------------------------------------------------------------------------------------- CONV
@njit(**JIT)
def _conv_fwd(A, P, W, row, n, lo, hi, wso):
    xo, _, C, H, Wd = inp(row, 0)
    yo, _, O, Ho, Wo = out(row)
    kh, kw, sh, sw, ph, pw, dh, dw, g, has_bias = _attrs(row)
    Cg, Og = C // g, O // g
    K, Pn, HW = Cg * kh * kw, Ho * Wo, H * Wd
    wo, bo = row[abi.PARAM], row[abi.PARAM] + O * K
    pA, pP, pW = A.ctypes.data, P.ctypes.data, W.ctypes.data
    direct = kh == 1 and kw == 1 and sh == 1 and sw == 1 and ph == 0 and pw == 0
    for s in range(lo, hi):
        x, y = xo * n + s * C * HW, yo * n + s * O * Pn
        if g > 1 and Cg == 1 and Og == 1:  # depthwise
            A[y : y + O * Pn] = 0.0
            for c in range(C):
                for i in range(kh):
                    hlo, hhi = _span(i * dh - ph, sh, H, Ho)
                    for j in range(kw):
                        off = j * dw - pw
                        wlo, whi = _span(off, sw, Wd, Wo)
                        wv = P[wo + (c * kh + i) * kw + j]
                        for oh in range(hlo, hhi):
                            d = y + c * Pn + oh * Wo
                            sx = x + c * HW + (oh * sh - ph + i * dh) * Wd + off
                            for ow in range(wlo, whi):
                                A[d + ow] += wv * A[sx + ow * sw]
        else:
            for gi in range(g):
                if direct:
                    b = pA + 4 * (x + gi * Cg * HW)
                else:
                    im2col(
                        A,
                        x + gi * Cg * HW,
                        Cg,
                        H,
                        Wd,
                        kh,
                        kw,
                        sh,
                        sw,
                        ph,
                        pw,
                        dh,
                        dw,
                        Ho,
                        Wo,
                        W,
                        wso,
                    )
                    b = pW + 4 * wso
                a = pP + 4 * (wo + gi * Og * K)
                sgemm(NOTR, NOTR, Og, Pn, K, a, K, b, Pn, pA + 4 * (y + gi * Og * Pn), Pn, False)
        if has_bias:
            _add_bias(A, y, P, bo, O, Pn)


@njit(**JIT)
def _conv_bwd(A, P, G, W, row, n, lo, hi, wso, gw, gb):
    """Samples [lo, hi): dx into A, dW into G[gw:] and db into G[gb:] (slot or arena)."""
    xo, dxo, C, H, Wd = inp(row, 0)
    _, dyo, O, Ho, Wo = out(row)
    kh, kw, sh, sw, ph, pw, dh, dw, g, has_bias = _attrs(row)
    Cg, Og = C // g, O // g
    K, Pn, HW = Cg * kh * kw, Ho * Wo, H * Wd
    wo = row[abi.PARAM]
    pA, pP, pG, pW = A.ctypes.data, P.ctypes.data, G.ctypes.data, W.ctypes.data
    direct = kh == 1 and kw == 1 and sh == 1 and sw == 1 and ph == 0 and pw == 0
    col, dcol = wso, wso + K * Pn
    for s in range(lo, hi):
        x, dy, dx = xo * n + s * C * HW, dyo * n + s * O * Pn, dxo * n + s * C * HW
        if g > 1 and Cg == 1 and Og == 1:  # depthwise
            for c in range(C):
                for i in range(kh):
                    hlo, hhi = _span(i * dh - ph, sh, H, Ho)
                    for j in range(kw):
                        off = j * dw - pw
                        wlo, whi = _span(off, sw, Wd, Wo)
                        k = (c * kh + i) * kw + j
                        wv, acc = P[wo + k], np.float32(0.0)
                        for oh in range(hlo, hhi):
                            d = dy + c * Pn + oh * Wo
                            sx = c * HW + (oh * sh - ph + i * dh) * Wd + off
                            for ow in range(wlo, whi):
                                acc += A[d + ow] * A[x + sx + ow * sw]
                            if dxo >= 0:
                                for ow in range(wlo, whi):
                                    A[dx + sx + ow * sw] += wv * A[d + ow]
                        G[gw + k] += acc
        else:
            for gi in range(g):
                xg, dyg = x + gi * Cg * HW, pA + 4 * (dy + gi * Og * Pn)
                wg, gwg = pP + 4 * (wo + gi * Og * K), pG + 4 * (gw + gi * Og * K)
                if direct:
                    b = pA + 4 * xg
                else:
                    im2col(A, xg, Cg, H, Wd, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo, W, col)
                    b = pW + 4 * col
                sgemm(NOTR, TR, Og, K, Pn, dyg, Pn, b, Pn, gwg, K, True)  # dW += dy col^T
                if dxo >= 0:
                    if direct:  # dx += W^T dy
                        sgemm(
                            TR,
                            NOTR,
                            K,
                            Pn,
                            Og,
                            wg,
                            K,
                            dyg,
                            Pn,
                            pA + 4 * (dx + gi * Cg * HW),
                            Pn,
                            True,
                        )
                    else:
                        sgemm(TR, NOTR, K, Pn, Og, wg, K, dyg, Pn, pW + 4 * dcol, Pn, False)
                        col2im(
                            W,
                            dcol,
                            A,
                            dx + gi * Cg * HW,
                            Cg,
                            H,
                            Wd,
                            kh,
                            kw,
                            sh,
                            sw,
                            ph,
                            pw,
                            dh,
                            dw,
                            Ho,
                            Wo,
                        )
        if has_bias:
            _bias_grad(A, dy, G, gb, O, Pn)


# -------------------------------------------------------------------------------------- DECONV
# A transposed convolution is the adjoint of a convolution from y (O, Ho, Wo) to x (C, H, W):
# forward is col = W^T x, then col2im into y; backward is im2col of dy, then two gemms.
@njit(**JIT)
def _deconv_fwd(A, P, W, row, n, lo, hi, wso):
    xo, _, C, H, Wd = inp(row, 0)
    yo, _, O, Ho, Wo = out(row)
    kh, kw, sh, sw, ph, pw, dh, dw, g, has_bias = _attrs(row)
    Cg, Og = C // g, O // g
    K, Pn, HWo = Og * kh * kw, H * Wd, Ho * Wo
    wo, bo = row[abi.PARAM], row[abi.PARAM] + C * K
    pA, pP, pW = A.ctypes.data, P.ctypes.data, W.ctypes.data
    direct = kh == 1 and kw == 1 and sh == 1 and sw == 1 and ph == 0 and pw == 0 and Pn == HWo
    for s in range(lo, hi):
        x, y = xo * n + s * C * Pn, yo * n + s * O * HWo
        if not direct:
            A[y : y + O * HWo] = 0.0
        for gi in range(g):
            a, b = pP + 4 * (wo + gi * Cg * K), pA + 4 * (x + gi * Cg * Pn)
            if direct:
                sgemm(TR, NOTR, K, Pn, Cg, a, K, b, Pn, pA + 4 * (y + gi * Og * HWo), Pn, False)
            else:
                sgemm(TR, NOTR, K, Pn, Cg, a, K, b, Pn, pW + 4 * wso, Pn, False)
                col2im(
                    W, wso, A, y + gi * Og * HWo, Og, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw, H, Wd
                )
        if has_bias:
            _add_bias(A, y, P, bo, O, HWo)


@njit(**JIT)
def _deconv_bwd(A, P, G, W, row, n, lo, hi, wso, gw, gb):
    xo, dxo, C, H, Wd = inp(row, 0)
    _, dyo, O, Ho, Wo = out(row)
    kh, kw, sh, sw, ph, pw, dh, dw, g, has_bias = _attrs(row)
    Cg, Og = C // g, O // g
    K, Pn, HWo = Og * kh * kw, H * Wd, Ho * Wo
    wo = row[abi.PARAM]
    pA, pP, pG, pW = A.ctypes.data, P.ctypes.data, G.ctypes.data, W.ctypes.data
    direct = kh == 1 and kw == 1 and sh == 1 and sw == 1 and ph == 0 and pw == 0 and Pn == HWo
    for s in range(lo, hi):
        x, dy, dx = xo * n + s * C * Pn, dyo * n + s * O * HWo, dxo * n + s * C * Pn
        for gi in range(g):
            dyg = dy + gi * Og * HWo
            if direct:
                b = pA + 4 * dyg
            else:
                im2col(A, dyg, Og, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw, H, Wd, W, wso)
                b = pW + 4 * wso
            wg, xg = pP + 4 * (wo + gi * Cg * K), pA + 4 * (x + gi * Cg * Pn)
            sgemm(NOTR, TR, Cg, K, Pn, xg, Pn, b, Pn, pG + 4 * (gw + gi * Cg * K), K, True)
            if dxo >= 0:
                sgemm(NOTR, NOTR, Cg, Pn, K, wg, K, b, Pn, pA + 4 * (dx + gi * Cg * Pn), Pn, True)
        if has_bias:
            _bias_grad(A, dy, G, gb, O, HWo)


# ------------------------------------------------------------------------------- entry points
CONV_F, DECONV_F, CONV_B, DECONV_B = 0, 1, 2, 3  # op % 2: deconv, op >= 2: backward


@njit(**JIT)
def _sizes(op, row):
    """(K, P, weight size, bias size): column rows/cols of one group and the parameter sizes."""
    C, O, g = row[abi.IN + abi.IN_C], row[abi.OC], row[abi.ATTR + 8]
    kk = row[abi.ATTR] * row[abi.ATTR + 1]
    nb = O if row[abi.ATTR + 9] else 0
    if op % 2 == 0:  # CONV
        return (C // g) * kk, row[abi.OH] * row[abi.OW], O * (C // g) * kk, nb
    return (O // g) * kk, row[abi.IN + abi.IN_H] * row[abi.IN + abi.IN_W], C * (O // g) * kk, nb


@njit(**JIT)
def _chunk(op, c, nch, A, P, G, W, row, n):
    """Samples of chunk c; workspace slot c. Backward chunks > 0 keep dW/db in their slot."""
    lo, hi = chunk(c, nch, n)
    ws = row[abi.WS]
    if op == CONV_F:
        _conv_fwd(A, P, W, row, n, lo, hi, c * ws)
    elif op == DECONV_F:
        _deconv_fwd(A, P, W, row, n, lo, hi, c * ws)
    else:
        K, Pn, nw, nb = _sizes(op, row)
        gw, dst = row[abi.PARAM], G
        if c > 0:
            gw, dst = c * ws + 2 * K * Pn, W
            W[gw : gw + nw + nb] = 0.0
        if op == CONV_B:
            _conv_bwd(A, P, dst, W, row, n, lo, hi, c * ws, gw, gw + nw)
        else:
            _deconv_bwd(A, P, dst, W, row, n, lo, hi, c * ws, gw, gw + nw)


@njit(**PJIT)
def _run(op, A, P, G, W, row, n):
    K, Pn, nw, nb = _sizes(op, row)
    macs = n * K * Pn * (row[abi.OC] if op % 2 == 0 else row[abi.IN + abi.IN_C])
    nch = nchunks(macs if op < CONV_B else 2 * macs, n)
    if nch == 1:
        _chunk(op, 0, 1, A, P, G, W, row, n)
        return
    for c in prange(nch):
        _chunk(op, c, nch, A, P, G, W, row, n)
    if op >= CONV_B:  # add the other chunks' weight gradients, in order
        ws, go, first = row[abi.WS], row[abi.PARAM], 2 * K * Pn
        for t in range(1, nch):
            b = t * ws + first
            for i in range(nw + nb):
                G[go + i] += W[b + i]


@njit(**JIT)
def conv_forward(A, P, G, S, W, row, frow, n, training, seed):
    _run(np.int64(CONV_F), A, P, G, W, row, n)


@njit(**JIT)
def conv_backward(A, P, G, S, W, row, frow, n, training, seed):
    _run(np.int64(CONV_B), A, P, G, W, row, n)


@njit(**JIT)
def deconv_forward(A, P, G, S, W, row, frow, n, training, seed):
    _run(np.int64(DECONV_F), A, P, G, W, row, n)


@njit(**JIT)
def deconv_backward(A, P, G, S, W, row, frow, n, training, seed):
    _run(np.int64(DECONV_B), A, P, G, W, row, n)
