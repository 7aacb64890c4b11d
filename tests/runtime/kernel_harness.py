"""Run one kernel step built by hand from the plan ABI, and float64 numpy references.

`Step` lays out one step's arena (inputs, input gradients, output, output gradient, aux) at
per-sample offsets with guard gaps, fills everything with random values, and runs the kernel's
forward or backward exactly as the executor would. The references below are written for
clarity, not speed: loops and einsum over float64 arrays shaped (n, C, H, W).
"""

from __future__ import annotations

import numba
import numpy as np

from cnnc.compiler import abi
from cnnc.compiler.layers import REGISTRY
from cnnc.runtime.table import KERNELS, KIND_ORDER


def workspace_size(kind, ints, in_shape, out_shape):
    """The compiler's per-thread workspace rule for a step given by its ABI integers."""
    attrs = {"kernel": (ints[0], ints[1]), "groups": ints[8]} if kind in ("CONV", "DECONV") else {}
    return REGISTRY[kind].workspace(attrs, [tuple(in_shape)], tuple(out_shape))


GUARD = 3  # per-sample floats left between tensors, to catch writes out of bounds


# ---------------------------------------------------------------------------- shapes & params


def conv_out(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def pool_out(size, k, s, p, ceil):
    """torch's pooling output size (ceil mode: the last window must start inside)."""
    num = size + 2 * p - k
    out = (-(-num // s) if ceil else num // s) + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1
    return out


def out_shape(kind, ins, ints, ceil=False):
    c, h, w = ins[0]
    if kind == "CONV":
        kh, kw, sh, sw, ph, pw, dh, dw, _, _ = ints[:10]
        return ints[10], conv_out(h, kh, sh, ph, dh), conv_out(w, kw, sw, pw, dw)
    if kind == "DECONV":
        kh, kw, sh, sw, ph, pw, dh, dw, _, _, oph, opw = ints[:12]
        o = ints[12]
        return (
            o,
            (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1,
            (w - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1,
        )
    if kind == "POOL":
        kh, kw, sh, sw, ph, pw = ints[:6]
        return c, pool_out(h, kh, sh, ph, ceil), pool_out(w, kw, sw, pw, ceil)
    if kind == "FC":
        return ints[1], 1, 1
    if kind == "FLATTEN":
        return c * h * w, 1, 1
    if kind == "UPSAMPLE":
        return c, h * ints[0], w * ints[1]
    if kind == "CONCAT":
        return sum(s[0] for s in ins), h, w
    return c, h, w


def param_shapes(kind, ins, ints, out):
    """Parameter shapes, PyTorch layout: weight first, then bias."""
    c, h, w = ins[0]
    if kind == "CONV":
        shapes = [(out[0], c // ints[8], ints[0], ints[1])]
        return shapes + [(out[0],)] if ints[9] else shapes
    if kind == "DECONV":
        shapes = [(c, out[0] // ints[8], ints[0], ints[1])]
        return shapes + [(out[0],)] if ints[9] else shapes
    if kind == "FC":
        shapes = [(out[0], c * h * w)]
        return shapes + [(out[0],)] if ints[0] else shapes
    if kind == "BN":
        return [(c,), (c,)]
    return []


# Kernels take only the ABI's INT_ATTRS; test cases append the output channel count for CONV,
# DECONV (ints[10] / ints[12]) and FC (ints[1]), which the compiler puts in row[OC] instead.
N_ABI_INTS = {"CONV": 10, "DECONV": 12, "FC": 1}


class Step:
    """One step of a plan: arenas, row and frow, laid out by hand from compiler/abi.py."""

    def __init__(self, kind, ins, ints=(), floats=(), n=2, ceil=False, rng=None, need_dx=None):
        rng = rng if rng is not None else np.random.default_rng(0)
        self.kind, self.n, self.ints, self.floats = kind, n, tuple(ints), tuple(floats)
        self.in_shapes = [tuple(s) for s in ins]
        self.out_shape = tuple(out_shape(kind, self.in_shapes, ints, ceil))
        need_dx = need_dx if need_dx is not None else [True] * len(ins)
        top = 0

        def alloc(shape):
            nonlocal top
            off = top + GUARD
            top = off + int(np.prod(shape))
            return off

        self.offs = [alloc(s) for s in self.in_shapes]
        self.doffs = [alloc(s) if d else -1 for s, d in zip(self.in_shapes, need_dx, strict=True)]
        self.yoff, self.dyoff = alloc(self.out_shape), alloc(self.out_shape)
        self.auxoff = alloc(self.in_shapes[0]) if kind == "DROPOUT" else -1
        self.A = rng.standard_normal((top + GUARD) * n).astype(np.float32)

        self.pshapes = param_shapes(kind, self.in_shapes, ints, self.out_shape)
        psize = sum(int(np.prod(s)) for s in self.pshapes)
        self.poff = 5
        self.P = rng.standard_normal(self.poff + psize + GUARD).astype(np.float32)
        self.G = rng.standard_normal(self.P.size).astype(np.float32)
        if kind == "BN":
            c = self.in_shapes[0][0]
            self.P[self.poff : self.poff + c] = rng.uniform(0.5, 1.5, c)  # gamma
        self.soff = 4
        nstate = 4 * self.in_shapes[0][0] if kind == "BN" else 0
        self.S = rng.uniform(0.5, 1.5, self.soff + nstate + GUARD).astype(np.float32)

        abi_ints = tuple(ints)[: N_ABI_INTS.get(kind, len(ints))]
        self.ws = workspace_size(kind, abi_ints, self.in_shapes[0], self.out_shape)
        self.W = np.full(numba.config.NUMBA_NUM_THREADS * self.ws + 1, np.nan, np.float32)

        row = np.zeros(abi.row_width(len(ins)), np.int64)
        row[abi.KIND], row[abi.NIN] = KIND_ORDER.index(kind), len(ins)
        row[abi.OUT], row[abi.DOUT] = self.yoff, self.dyoff
        row[abi.OC], row[abi.OH], row[abi.OW] = self.out_shape
        row[abi.PARAM], row[abi.STATE], row[abi.AUX] = self.poff, self.soff, self.auxoff
        row[abi.WS] = self.ws
        row[abi.ATTR : abi.ATTR + len(abi_ints)] = abi_ints
        for j, shape in enumerate(self.in_shapes):
            b = abi.IN + abi.IN_STRIDE * j
            row[b + abi.IN_OFF], row[b + abi.IN_DOFF] = self.offs[j], self.doffs[j]
            row[b + abi.IN_C], row[b + abi.IN_H], row[b + abi.IN_W] = shape
        self.row = row
        self.frow = np.zeros(abi.N_FLOAT, np.float64)
        self.frow[: len(floats)] = floats

    # views into the arenas, as (n, C, H, W) blocks
    def _view(self, off, shape):
        size = int(np.prod(shape))
        return self.A[off * self.n : (off + size) * self.n].reshape(self.n, *shape)

    def x(self, j=0):
        return self._view(self.offs[j], self.in_shapes[j])

    def dx(self, j=0):
        return self._view(self.doffs[j], self.in_shapes[j]) if self.doffs[j] >= 0 else None

    def y(self):
        return self._view(self.yoff, self.out_shape)

    def dy(self):
        return self._view(self.dyoff, self.out_shape)

    def aux(self):
        return self._view(self.auxoff, self.in_shapes[0])

    def params(self, arena=None):
        arena = self.P if arena is None else arena
        out, o = [], self.poff
        for s in self.pshapes:
            m = int(np.prod(s))
            out.append(arena[o : o + m].reshape(s))
            o += m
        return out

    def grads(self):
        return self.params(self.G)

    def state(self):
        c = self.in_shapes[0][0]
        return self.S[self.soff : self.soff + 4 * c].reshape(4, c)

    def run(self, backward=False, training=True, seed=0, n=None):
        f = KERNELS[self.kind][1 if backward else 0]
        n = self.n if n is None else n
        f(self.A, self.P, self.G, self.S, self.W, self.row, self.frow, n, training, seed)


# --------------------------------------------------------------------------------- references
# ref_forward(kind, xs, ps, ints, floats, ctx) -> y; ref_backward(...) -> (dxs, dps).
# xs: float64 inputs (n, C, H, W); ps: parameters; ctx: per-kind extras (BN stats, dropout mask).


def _patch(xp, i, j, ints, ho, wo):
    sh, sw, dh, dw = ints[2], ints[3], ints[6], ints[7]
    rows = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
    cols = slice(j * dw, j * dw + sw * (wo - 1) + 1, sw)
    return xp[:, :, rows, cols]


def conv_ref(x, w, ints):
    kh, kw, sh, sw, ph, pw, dh, dw, g = ints[:9]
    n, c, h, wd = x.shape
    o = w.shape[0]
    ho, wo = conv_out(h, kh, sh, ph, dh), conv_out(wd, kw, sw, pw, dw)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = np.zeros((n, o, ho, wo))
    cg, og = c // g, o // g
    for i in range(kh):
        for j in range(kw):
            patch = _patch(xp, i, j, ints, ho, wo)
            for q in range(g):
                ci, oi = slice(q * cg, (q + 1) * cg), slice(q * og, (q + 1) * og)
                y[:, oi] += np.einsum("nchw,oc->nohw", patch[:, ci], w[oi, :, i, j])
    return y


def conv_ref_grad(x, w, dy, ints):
    """(dx, dw) of sum(conv_ref(x, w) * dy)."""
    kh, kw, sh, sw, ph, pw, dh, dw_, g = ints[:9]
    n, c, h, wd = x.shape
    o, ho, wo = dy.shape[1:]
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    cg, og = c // g, o // g
    for i in range(kh):
        for j in range(kw):
            patch, dpatch = _patch(xp, i, j, ints, ho, wo), _patch(dxp, i, j, ints, ho, wo)
            for q in range(g):
                ci, oi = slice(q * cg, (q + 1) * cg), slice(q * og, (q + 1) * og)
                dpatch[:, ci] += np.einsum("nohw,oc->nchw", dy[:, oi], w[oi, :, i, j])
                dw[oi, :, i, j] += np.einsum("nohw,nchw->oc", dy[:, oi], patch[:, ci])
    return dxp[:, :, ph : ph + h, pw : pw + wd], dw


def _deconv_geometry(x_shape, ints):
    """Output size of the transposed conv, and the size of the conv it is the adjoint of."""
    kh, kw, sh, sw, ph, pw, dh, dw, g, _, oph, opw = ints[:12]
    h, w = x_shape[2:]
    ho = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    wo = (w - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    return ho, wo, conv_out(ho, kh, sh, ph, dh), conv_out(wo, kw, sw, pw, dw)


def deconv_ref(x, w, ints):
    """A transposed conv is the input-gradient of the conv from its output to its input."""
    ho, wo, hc, wc = _deconv_geometry(x.shape, ints)
    n, c, h, wd = x.shape
    xpad = np.zeros((n, c, hc, wc))  # output padding can make the adjoint conv's output larger
    xpad[:, :, :h, :wd] = x
    o = w.shape[1] * ints[8]
    return conv_ref_grad(np.zeros((n, o, ho, wo)), w, xpad, ints)[0]


def deconv_ref_grad(x, w, dy, ints):
    ho, wo, hc, wc = _deconv_geometry(x.shape, ints)
    n, c, h, wd = x.shape
    xpad = np.zeros((n, c, hc, wc))
    xpad[:, :, :h, :wd] = x
    dx = conv_ref(dy, w, ints)[:, :, :h, :wd]
    return dx, conv_ref_grad(dy, w, xpad, ints)[1]


def _pool_windows(h, w, ints, ho, wo):
    kh, kw, sh, sw, ph, pw = ints[:6]
    for oh in range(ho):
        for ow in range(wo):
            h0, w0 = oh * sh - ph, ow * sw - pw
            h1, w1 = min(h0 + kh, h + ph), min(w0 + kw, w + pw)
            padded = (h1 - h0) * (w1 - w0)
            h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, h), min(w1, w)
            yield oh, ow, h0, h1, w0, w1, padded


def pool_ref(x, ints, out):
    mode, cip = ints[6], ints[7]
    n, c, h, w = x.shape
    y = np.zeros((n, c, *out[1:]))
    for oh, ow, h0, h1, w0, w1, padded in _pool_windows(h, w, ints, *out[1:]):
        win = x[:, :, h0:h1, w0:w1]
        if mode == 0:
            y[:, :, oh, ow] = win.max(axis=(2, 3))
        else:
            div = 1 if mode == 2 else (padded if cip else win.shape[2] * win.shape[3])
            y[:, :, oh, ow] = win.sum(axis=(2, 3)) / div
    return y


def pool_ref_grad(x, dy, ints):
    mode, cip = ints[6], ints[7]
    n, c, h, w = x.shape
    dx = np.zeros_like(x)
    for oh, ow, h0, h1, w0, w1, padded in _pool_windows(h, w, ints, *dy.shape[2:]):
        g = dy[:, :, oh, ow]
        if mode == 0:  # the first maximum of the window takes the gradient
            win = x[:, :, h0:h1, w0:w1].reshape(n, c, -1)
            first = win.argmax(axis=2)
            for a in range(n):
                for b in range(c):
                    i, j = divmod(first[a, b], w1 - w0)
                    dx[a, b, h0 + i, w0 + j] += g[a, b]
        else:
            div = 1 if mode == 2 else (padded if cip else (h1 - h0) * (w1 - w0))
            dx[:, :, h0:h1, w0:w1] += (g / div)[:, :, None, None]
    return dx


def softmax_ref(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def bn_ref(x, gamma, beta, eps, training, rm, rv):
    if training:
        mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    else:
        mean, var = rm, rv
    xhat = (x - mean[:, None, None]) / np.sqrt(var + eps)[:, None, None]
    return xhat * gamma[:, None, None] + beta[:, None, None]


def bn_ref_grad(x, gamma, eps, training, rm, rv, dy):
    """Textbook chain rule through mean and variance (training) or through xhat (inference)."""
    axes = (0, 2, 3)
    if not training:
        inv = 1 / np.sqrt(rv + eps)
        xhat = (x - rm[:, None, None]) * inv[:, None, None]
        dx = dy * (gamma * inv)[:, None, None]
        return dx, (dy * xhat).sum(axes), dy.sum(axes)
    m = x.shape[0] * x.shape[2] * x.shape[3]
    mean, var = x.mean(axes), x.var(axes)
    xc = x - mean[:, None, None]
    inv = 1 / np.sqrt(var + eps)
    dxhat = dy * gamma[:, None, None]
    dvar = (dxhat * xc).sum(axes) * -0.5 * inv**3
    dmean = -(dxhat * inv[:, None, None]).sum(axes) + dvar * (-2 * xc).sum(axes) / m
    dx = dxhat * inv[:, None, None] + dvar[:, None, None] * 2 * xc / m + dmean[:, None, None] / m
    return dx, (dy * xc * inv[:, None, None]).sum(axes), dy.sum(axes)


def _lrn_window(c, size, channels):
    return range(max(c - size // 2, 0), min(c + (size - 1) // 2 + 1, channels))


def _lrn_scale(x, size, alpha, k):
    s = np.zeros_like(x)
    for c in range(x.shape[1]):
        for c2 in _lrn_window(c, size, x.shape[1]):
            s[:, c] += x[:, c2] ** 2
    return k + alpha / size * s


def lrn_ref(x, size, alpha, beta, k):
    return x * _lrn_scale(x, size, alpha, k) ** -beta


def lrn_ref_grad(x, dy, size, alpha, beta, k):
    s = _lrn_scale(x, size, alpha, k)
    dx = dy * s**-beta
    for c in range(x.shape[1]):  # y_c depends on x_j for every j in c's window
        coef = dy[:, c] * x[:, c] * -beta * s[:, c] ** (-beta - 1) * alpha / size
        for j in _lrn_window(c, size, x.shape[1]):
            dx[:, j] += coef * 2 * x[:, j]
    return dx


def ref_forward(kind, xs, ps, ints, floats, ctx):
    x = xs[0]
    n = x.shape[0]
    if kind == "CONV":
        y = conv_ref(x, ps[0], ints)
        return y + ps[1][:, None, None] if ints[9] else y
    if kind == "DECONV":
        y = deconv_ref(x, ps[0], ints)
        return y + ps[1][:, None, None] if ints[9] else y
    if kind == "POOL":
        return pool_ref(x, ints, ctx["out"])
    if kind == "FC":
        y = x.reshape(n, -1) @ ps[0].T + (ps[1] if ints[0] else 0)
        return y.reshape(n, -1, 1, 1)
    if kind == "FLATTEN":
        return x.reshape(n, -1, 1, 1)
    if kind == "RELU":
        return np.maximum(x, 0)
    if kind == "LEAKYRELU":
        return np.where(x > 0, x, floats[0] * x)
    if kind == "ELU":
        return np.where(x > 0, x, floats[0] * (np.exp(x) - 1))
    if kind == "TANH":
        return np.tanh(x)
    if kind == "SIGMOID":
        return 1 / (1 + np.exp(-x))
    if kind == "SOFTMAX":
        return softmax_ref(x)
    if kind == "BN":
        return bn_ref(x, ps[0], ps[1], floats[0], ctx["training"], ctx["rm"], ctx["rv"])
    if kind == "DROPOUT":
        return x * ctx["mask"] if ctx["training"] else x
    if kind == "LRN":
        return lrn_ref(x, ints[0], *floats[:3])
    if kind == "UPSAMPLE":
        return x.repeat(ints[0], axis=2).repeat(ints[1], axis=3)
    if kind == "ADD":
        return sum(xs)
    if kind == "CONCAT":
        return np.concatenate(xs, axis=1)
    raise KeyError(kind)


def ref_backward(kind, xs, ps, ints, floats, ctx, dy):
    x = xs[0]
    n = x.shape[0]
    if kind == "CONV":
        dx, dw = conv_ref_grad(x, ps[0], dy, ints)
        return [dx], [dw, dy.sum(axis=(0, 2, 3))][: len(ps)]
    if kind == "DECONV":
        dx, dw = deconv_ref_grad(x, ps[0], dy, ints)
        return [dx], [dw, dy.sum(axis=(0, 2, 3))][: len(ps)]
    if kind == "POOL":
        return [pool_ref_grad(x, dy, ints)], []
    if kind == "FC":
        g = dy.reshape(n, -1)
        dx = (g @ ps[0]).reshape(x.shape)
        return [dx], [g.T @ x.reshape(n, -1), g.sum(axis=0)][: len(ps)]
    if kind == "FLATTEN":
        return [dy.reshape(x.shape)], []
    if kind == "RELU":
        return [dy * (x > 0)], []
    if kind == "LEAKYRELU":
        return [dy * np.where(x > 0, 1, floats[0])], []
    if kind == "ELU":
        return [dy * np.where(x > 0, 1, floats[0] * np.exp(x))], []
    if kind == "TANH":
        return [dy / np.cosh(x) ** 2], []
    if kind == "SIGMOID":
        return [dy * np.exp(-x) / (1 + np.exp(-x)) ** 2], []
    if kind == "SOFTMAX":
        y = softmax_ref(x)  # Jacobian diag(y) - y y^T applied per pixel
        return [y * dy - y * (y * dy).sum(axis=1, keepdims=True)], []
    if kind == "BN":
        dx, dg, db = bn_ref_grad(x, ps[0], floats[0], ctx["training"], ctx["rm"], ctx["rv"], dy)
        return [dx], [dg, db]
    if kind == "DROPOUT":
        return [dy * ctx["mask"] if ctx["training"] else dy], []
    if kind == "LRN":
        return [lrn_ref_grad(x, dy, ints[0], *floats[:3])], []
    if kind == "UPSAMPLE":
        c, h, w = x.shape[1:]
        return [dy.reshape(n, c, h, ints[0], w, ints[1]).sum(axis=(3, 5))], []
    if kind == "ADD":
        return [dy] * len(xs), []
    if kind == "CONCAT":
        cuts = np.cumsum([a.shape[1] for a in xs])[:-1]
        return np.split(dy, cuts, axis=1), []
    raise KeyError(kind)
