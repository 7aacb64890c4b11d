"""Run one kernel step as a plan would, from the layer as a user writes it; float64 references.

`resolve("CONV 4@3x3 p1", "3x9x8")` reads the layer through the compiler (parse, expand) and asks
its registry entry for everything else: the output shape and the attributes the shape rule
resolved, the parameter and buffer shapes, the state and workspace sizes, whether it keeps an
aux buffer, and the row's integers and floats. `Step` lays that step out by hand from
compiler/abi.py, with its own arenas: every tensor at a per-sample offset with guard gaps between
them (to catch writes out of bounds), everything filled with random values, and runs the kernel's
forward or backward exactly as the executor would.

The references below are written for clarity, not speed: loops and einsum over float64 arrays
shaped (n, C, H, W). They read attributes by name from the resolved attrs (`a["stride"]`,
`a["groups"]`), never by row position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from cnnc.compiler import abi
from cnnc.compiler.expand import expand
from cnnc.compiler.layers import REGISTRY, LayerKind, Shape, fmt, numel
from cnnc.compiler.syntax import parse
from cnnc.runtime.table import KERNELS

GUARD = 3  # per-sample floats left between tensors, to catch writes out of bounds


# ------------------------------------------------------------------------ the layer, resolved


def shapes(ins: str | list[str]) -> tuple[Shape, ...]:
    """`"3x9x8"` -> ((3, 9, 8),); `["3x5x4", "2x5x4"]` -> ((3, 5, 4), (2, 5, 4))."""
    items = [ins] if isinstance(ins, str) else ins
    return tuple(tuple(int(d) for d in s.split("x")) for s in items)


def chw(shape: Shape) -> tuple[int, int, int]:
    """The ABI's view of a tensor: flat vectors are (F, 1, 1)."""
    return tuple(shape) if len(shape) == 3 else (shape[0], 1, 1)


@dataclass(frozen=True)
class Layer:
    kind: LayerKind
    attrs: dict  # as expand gives them, with what the shape rule resolved in their place
    ins: tuple[Shape, ...]
    out: Shape  # the registry's shape: (C, H, W), or (F,) for a flat vector
    params: dict[str, Shape]  # weight first, then bias (the order lower.py packs them in)
    buffers: dict[str, Shape]  # the first entries of the step's state (BN running stats)


def resolve(text: str, ins: str | list[str]) -> Layer:
    """The layer `text` on inputs `ins`, as check.py sees it: a one-layer spec, expanded."""
    in_shapes = shapes(ins)
    keyword, _, args = text.partition(" ")
    kind = REGISTRY[keyword]
    if kind.merge or len(in_shapes) > 1:  # branches, not the tensor before: `CONCAT(in, in) args`
        text = f"{keyword}({', '.join(['in'] * len(in_shapes))}) {args}"
    node = expand(parse(f"input {fmt(in_shapes[0])}\n{text}")).nodes[-1]
    inferred = kind.shape(node.attrs, list(in_shapes))
    attrs = {**node.attrs, **inferred.resolved}
    out = inferred.shape
    return Layer(
        kind,
        attrs,
        in_shapes,
        out,
        kind.params(attrs, list(in_shapes), out),
        kind.buffers(attrs, list(in_shapes), out),
    )


def _views(arena: np.ndarray, offset: int, named: dict[str, Shape]) -> dict[str, np.ndarray]:
    views = {}
    for name, shape in named.items():
        views[name] = arena[offset : offset + numel(shape)].reshape(shape)
        offset += numel(shape)
    return views


class Step:
    """One step of a plan: arenas, row and frow, laid out by hand from compiler/abi.py."""

    def __init__(self, text, ins, n=2, need_dx=None, rng=None):
        rng = rng if rng is not None else np.random.default_rng(0)
        layer = resolve(text, ins)
        kind = layer.kind
        self.layer, self.kind, self.attrs, self.n = layer, kind.name, layer.attrs, n
        self.in_shapes = [chw(s) for s in layer.ins]
        self.out_shape = chw(layer.out)
        need_dx = need_dx if need_dx is not None else [True] * len(self.in_shapes)
        top = 0

        def alloc(shape):
            nonlocal top
            off = top + GUARD
            top = off + numel(shape)
            return off

        self.offs = [alloc(s) for s in self.in_shapes]
        self.doffs = [alloc(s) if d else -1 for s, d in zip(self.in_shapes, need_dx, strict=True)]
        self.yoff, self.dyoff = alloc(self.out_shape), alloc(self.out_shape)
        self.auxoff = alloc(self.in_shapes[0]) if kind.aux else -1
        self.A = rng.standard_normal((top + GUARD) * n).astype(np.float32)

        self.pshapes = list(layer.params.values())
        psize = sum(numel(s) for s in self.pshapes)
        self.poff = 5
        self.P = rng.standard_normal(self.poff + psize + GUARD).astype(np.float32)
        self.G = rng.standard_normal(self.P.size).astype(np.float32)
        if self.kind == "BN":
            c = self.in_shapes[0][0]
            self.P[self.poff : self.poff + c] = rng.uniform(0.5, 1.5, c)  # gamma
        self.soff = 4
        self.state_size = kind.state_size(layer.attrs, list(layer.ins), layer.out)
        self.S = rng.uniform(0.5, 1.5, self.soff + self.state_size + GUARD).astype(np.float32)

        self.ws = kind.workspace(layer.attrs, list(layer.ins), layer.out)
        self.W = np.full(numba.config.NUMBA_NUM_THREADS * self.ws + 1, np.nan, np.float32)

        row = np.zeros(abi.row_width(len(self.in_shapes)), np.int64)
        row[abi.KIND], row[abi.NIN] = abi.KIND_INDEX[self.kind], len(self.in_shapes)
        row[abi.OUT], row[abi.DOUT] = self.yoff, self.dyoff
        row[abi.OC], row[abi.OH], row[abi.OW] = self.out_shape
        row[abi.PARAM], row[abi.STATE], row[abi.AUX] = self.poff, self.soff, self.auxoff
        row[abi.WS] = self.ws
        attr_ints = kind.int_values(layer.attrs)
        row[abi.ATTR : abi.ATTR + len(attr_ints)] = attr_ints
        for j, shape in enumerate(self.in_shapes):
            b = abi.IN + abi.IN_STRIDE * j
            row[b + abi.IN_OFF], row[b + abi.IN_DOFF] = self.offs[j], self.doffs[j]
            row[b + abi.IN_C], row[b + abi.IN_H], row[b + abi.IN_W] = shape
        self.row = row
        attr_floats = kind.float_values(layer.attrs)
        self.frow = np.zeros(abi.N_FLOAT, np.float64)
        self.frow[: len(attr_floats)] = attr_floats

    # views into the arenas, as (n, C, H, W) blocks
    def _view(self, off, shape):
        size = numel(shape)
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
        return list(_views(arena, self.poff, self.layer.params).values())

    def grads(self):
        return self.params(self.G)

    def state(self):
        """This step's state: its named buffers first (as lower.py lays them), then the rest."""
        return self.S[self.soff : self.soff + self.state_size]

    def buffers(self, state=None):
        """The named buffers of `state` (default: the live state), e.g. BN's running_mean."""
        return _views(self.state() if state is None else state, 0, self.layer.buffers)

    def run(self, backward=False, training=True, seed=0, n=None):
        f = KERNELS[self.kind][1 if backward else 0]
        n = self.n if n is None else n
        f(self.A, self.P, self.G, self.S, self.W, self.row, self.frow, n, training, seed)


# --------------------------------------------------------------------------------- references
# ref_forward(kind, xs, ps, a, ctx) -> y; ref_backward(...) -> (dxs, dps).
# xs: float64 inputs (n, C, H, W); ps: parameters; a: the resolved attributes, by name;
# ctx: per-kind extras (BN running stats, dropout mask, the output shape).


def conv_out(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _patch(xp, i, j, a, ho, wo):
    (sh, sw), (dh, dw) = a["stride"], a["dilation"]
    rows = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
    cols = slice(j * dw, j * dw + sw * (wo - 1) + 1, sw)
    return xp[:, :, rows, cols]


def _conv_pad(x, a):
    """x zero padded top/left by `pad` and bottom/right by `pad_end` (CONV's; DECONV's is `pad`)."""
    (ph, pw), (pb, pr) = a["pad"], a.get("pad_end", a["pad"])
    return np.pad(x, ((0, 0), (0, 0), (ph, pb), (pw, pr)))


def conv_ref(x, w, a):
    (kh, kw), (sh, sw), (dh, dw) = a["kernel"], a["stride"], a["dilation"]
    g = a["groups"]
    n, c, _, _ = x.shape
    o = w.shape[0]
    xp = _conv_pad(x, a)
    ho, wo = conv_out(xp.shape[2], kh, sh, 0, dh), conv_out(xp.shape[3], kw, sw, 0, dw)
    y = np.zeros((n, o, ho, wo))
    cg, og = c // g, o // g
    for i in range(kh):
        for j in range(kw):
            patch = _patch(xp, i, j, a, ho, wo)
            for q in range(g):
                ci, oi = slice(q * cg, (q + 1) * cg), slice(q * og, (q + 1) * og)
                y[:, oi] += np.einsum("nchw,oc->nohw", patch[:, ci], w[oi, :, i, j])
    return y


def conv_ref_grad(x, w, dy, a):
    """(dx, dw) of sum(conv_ref(x, w) * dy)."""
    (kh, kw), (ph, pw), g = a["kernel"], a["pad"], a["groups"]
    n, c, h, wd = x.shape
    o, ho, wo = dy.shape[1:]
    xp = _conv_pad(x, a)
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    cg, og = c // g, o // g
    for i in range(kh):
        for j in range(kw):
            patch, dpatch = _patch(xp, i, j, a, ho, wo), _patch(dxp, i, j, a, ho, wo)
            for q in range(g):
                ci, oi = slice(q * cg, (q + 1) * cg), slice(q * og, (q + 1) * og)
                dpatch[:, ci] += np.einsum("nohw,oc->nchw", dy[:, oi], w[oi, :, i, j])
                dw[oi, :, i, j] += np.einsum("nohw,nchw->oc", dy[:, oi], patch[:, ci])
    return dxp[:, :, ph : ph + h, pw : pw + wd], dw


def _deconv_geometry(x_shape, a):
    """Output size of the transposed conv, and the size of the conv it is the adjoint of."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = a["kernel"], a["stride"], a["pad"], a["dilation"]
    oph, opw = a["outpad"]
    h, w = x_shape[2:]
    ho = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    wo = (w - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    return ho, wo, conv_out(ho, kh, sh, ph, dh), conv_out(wo, kw, sw, pw, dw)


def deconv_ref(x, w, a):
    """A transposed conv is the input-gradient of the conv from its output to its input."""
    ho, wo, hc, wc = _deconv_geometry(x.shape, a)
    n, c, h, wd = x.shape
    xpad = np.zeros((n, c, hc, wc))  # output padding can make the adjoint conv's output larger
    xpad[:, :, :h, :wd] = x
    o = w.shape[1] * a["groups"]
    return conv_ref_grad(np.zeros((n, o, ho, wo)), w, xpad, a)[0]


def deconv_ref_grad(x, w, dy, a):
    ho, wo, hc, wc = _deconv_geometry(x.shape, a)
    n, c, h, wd = x.shape
    xpad = np.zeros((n, c, hc, wc))
    xpad[:, :, :h, :wd] = x
    dx = conv_ref(dy, w, a)[:, :, :h, :wd]
    return dx, conv_ref_grad(dy, w, xpad, a)[1]


def _pool_taps(o, size, n_out, k, s, pad, pad_end, d, adaptive):
    """The input indices output o pools along one axis, and the count_pad divisor's extent."""
    if adaptive:  # PyTorch: [floor(o * size / n_out), ceil((o + 1) * size / n_out))
        lo, hi = math.floor(o * size / n_out), math.ceil((o + 1) * size / n_out)
        return list(range(lo, hi)), hi - lo
    start = o * s - pad
    taps = [start + d * i for i in range(k)]
    extent = min(start + d * (k - 1) + 1, size + pad_end) - start
    return [t for t in taps if 0 <= t < size], extent


def _pool_windows(h, w, a, ho, wo):
    (kh, kw), (sh, sw), (ph, pw) = a["kernel"], a["stride"], a["pad"]
    (pb, pr), (dh, dw), adaptive = a["pad_end"], a["dilation"], a["adaptive"]
    for oh in range(ho):
        rows, hext = _pool_taps(oh, h, ho, kh, sh, ph, pb, dh, adaptive)
        for ow in range(wo):
            cols, wext = _pool_taps(ow, w, wo, kw, sw, pw, pr, dw, adaptive)
            yield oh, ow, rows, cols, hext * wext


def _pool_divisor(a, padded, real):
    """torch's: 1 for sum; the window clipped to the padded input with count_pad, else the
    number of real elements."""
    if a["mode"] == "sum":
        return 1
    return padded if a["count_pad"] else real


def pool_ref(x, a, out):
    n, c, h, w = x.shape
    y = np.zeros((n, c, *out[1:]))
    for oh, ow, rows, cols, padded in _pool_windows(h, w, a, *out[1:]):
        win = x[:, :, rows][:, :, :, cols]
        if a["mode"] == "max":
            y[:, :, oh, ow] = win.max(axis=(2, 3))
        else:
            div = _pool_divisor(a, padded, len(rows) * len(cols))
            y[:, :, oh, ow] = win.sum(axis=(2, 3)) / div
    return y


def pool_ref_grad(x, dy, a):
    n, c, h, w = x.shape
    dx = np.zeros_like(x)
    for oh, ow, rows, cols, padded in _pool_windows(h, w, a, *dy.shape[2:]):
        g = dy[:, :, oh, ow]
        if a["mode"] == "max":  # the first maximum of the window takes the gradient
            win = x[:, :, rows][:, :, :, cols].reshape(n, c, -1)
            first = win.argmax(axis=2)
            for s in range(n):
                for b in range(c):
                    i, j = divmod(first[s, b], len(cols))
                    dx[s, b, rows[i], cols[j]] += g[s, b]
        else:
            div = _pool_divisor(a, padded, len(rows) * len(cols))
            dx[:, :, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] += (g / div)[:, :, None, None]
    return dx


def bilinear_matrix(size, n_out, align_corners):
    """(n_out, size) interpolation weights along one axis, as PyTorch computes them."""
    m = np.zeros((n_out, size))
    for o in range(n_out):
        if align_corners:
            src = o * (size - 1) / (n_out - 1) if n_out > 1 else 0.0
        else:
            src = max((o + 0.5) * size / n_out - 0.5, 0.0)
        i0 = min(int(math.floor(src)), size - 1)
        i1 = min(i0 + 1, size - 1)
        m[o, i0] += 1 - (src - i0)
        m[o, i1] += src - i0
    return m


def bilinear_ref(x, out, align_corners):
    mh = bilinear_matrix(x.shape[2], out[1], align_corners)
    mw = bilinear_matrix(x.shape[3], out[2], align_corners)
    return np.einsum("oh,nchw,pw->ncop", mh, x, mw)


def bilinear_ref_grad(x, dy, align_corners):
    mh = bilinear_matrix(x.shape[2], dy.shape[2], align_corners)
    mw = bilinear_matrix(x.shape[3], dy.shape[3], align_corners)
    return np.einsum("oh,ncop,pw->nchw", mh, dy, mw)


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


def _lrn_scale(x, a):
    s = np.zeros_like(x)
    for c in range(x.shape[1]):
        for c2 in _lrn_window(c, a["size"], x.shape[1]):
            s[:, c] += x[:, c2] ** 2
    return a["k"] + a["alpha"] / a["size"] * s


def lrn_ref(x, a):
    return x * _lrn_scale(x, a) ** -a["beta"]


def lrn_ref_grad(x, dy, a):
    size, alpha, beta = a["size"], a["alpha"], a["beta"]
    s = _lrn_scale(x, a)
    dx = dy * s**-beta
    for c in range(x.shape[1]):  # y_c depends on x_j for every j in c's window
        coef = dy[:, c] * x[:, c] * -beta * s[:, c] ** (-beta - 1) * alpha / size
        for j in _lrn_window(c, size, x.shape[1]):
            dx[:, j] += coef * 2 * x[:, j]
    return dx


def ref_forward(kind, xs, ps, a, ctx):
    x = xs[0]
    n = x.shape[0]
    if kind == "CONV":
        y = conv_ref(x, ps[0], a)
        return y + ps[1][:, None, None] if a["bias"] else y
    if kind == "DECONV":
        y = deconv_ref(x, ps[0], a)
        return y + ps[1][:, None, None] if a["bias"] else y
    if kind == "POOL":
        return pool_ref(x, a, ctx["out"])
    if kind == "FC":
        y = x.reshape(n, -1) @ ps[0].T + (ps[1] if a["bias"] else 0)
        return y.reshape(n, -1, 1, 1)
    if kind == "FLATTEN":
        return x.reshape(n, -1, 1, 1)
    if kind == "SOFTMAX":
        return softmax_ref(x)
    if kind == "BN":
        return bn_ref(x, ps[0], ps[1], a["eps"], ctx["training"], ctx["rm"], ctx["rv"])
    if kind == "DROPOUT":
        return x * ctx["mask"] if ctx["training"] else x
    if kind == "LRN":
        return lrn_ref(x, a)
    if kind == "UPSAMPLE" and a["mode"] == "bilinear":
        return bilinear_ref(x, ctx["out"], a["align_corners"])
    if kind == "UPSAMPLE":
        sh, sw = a["scale"]
        return x.repeat(sh, axis=2).repeat(sw, axis=3)
    if kind == "ADD":
        return sum(xs)
    if kind == "CONCAT":
        return np.concatenate(xs, axis=1)
    if kind == "PRELU":
        return np.where(x > 0, x, ps[0][:, None, None] * x)
    if kind == "SCALE":
        return x * ps[0][:, None, None]
    if kind == "MUL":
        return xs[0] * xs[1]  # numpy broadcasts a (n, C, 1, 1) gate over the pixels
    if kind == "LN":
        return ln_ref(x, ps[0], ps[1], a["eps"])
    if kind == "SLICE":
        return x[:, a["from"] : a["to"]]
    if kind == "SHUFFLE":
        g, (c, h, w) = a["groups"], x.shape[1:]
        return x.reshape(n, g, c // g, h, w).transpose(0, 2, 1, 3, 4).reshape(x.shape)
    if kind == "DROPPATH":
        return x * ctx["scale"][:, None, None, None] if ctx["training"] else x
    raise KeyError(kind)


def ln_ref(x, gamma, beta, eps):
    """LayerNorm over the channels of each pixel (axis 1), biased variance."""
    mean, var = x.mean(axis=1, keepdims=True), x.var(axis=1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma[:, None, None] + beta[:, None, None]


def ln_ref_grad(x, gamma, eps, dy):
    """The chain rule through the per-pixel mean and variance."""
    c = x.shape[1]
    mean, var = x.mean(axis=1, keepdims=True), x.var(axis=1, keepdims=True)
    inv = 1 / np.sqrt(var + eps)
    xhat = (x - mean) * inv
    dxhat = dy * gamma[:, None, None]
    dvar = (dxhat * (x - mean)).sum(axis=1, keepdims=True) * -0.5 * inv**3
    dmean = -(dxhat * inv).sum(axis=1, keepdims=True) + dvar * -2 * (x - mean).mean(
        axis=1, keepdims=True
    )
    dx = dxhat * inv + dvar * 2 * (x - mean) / c + dmean / c
    return dx, (dy * xhat).sum(axis=(0, 2, 3)), dy.sum(axis=(0, 2, 3))


def _unbroadcast(grad, shape):
    """Sum a gradient over the axes a broadcast input was repeated along."""
    axes = tuple(i for i, (g, s) in enumerate(zip(grad.shape, shape, strict=True)) if s != g)
    return grad.sum(axis=axes, keepdims=True)


def ref_backward(kind, xs, ps, a, ctx, dy):
    x = xs[0]
    n = x.shape[0]
    if kind == "CONV":
        dx, dw = conv_ref_grad(x, ps[0], dy, a)
        return [dx], [dw, dy.sum(axis=(0, 2, 3))][: len(ps)]
    if kind == "DECONV":
        dx, dw = deconv_ref_grad(x, ps[0], dy, a)
        return [dx], [dw, dy.sum(axis=(0, 2, 3))][: len(ps)]
    if kind == "POOL":
        return [pool_ref_grad(x, dy, a)], []
    if kind == "FC":
        g = dy.reshape(n, -1)
        dx = (g @ ps[0]).reshape(x.shape)
        return [dx], [g.T @ x.reshape(n, -1), g.sum(axis=0)][: len(ps)]
    if kind == "FLATTEN":
        return [dy.reshape(x.shape)], []
    if kind == "SOFTMAX":
        y = softmax_ref(x)  # Jacobian diag(y) - y y^T applied per pixel
        return [y * dy - y * (y * dy).sum(axis=1, keepdims=True)], []
    if kind == "BN":
        dx, dg, db = bn_ref_grad(x, ps[0], a["eps"], ctx["training"], ctx["rm"], ctx["rv"], dy)
        return [dx], [dg, db]
    if kind == "DROPOUT":
        return [dy * ctx["mask"] if ctx["training"] else dy], []
    if kind == "LRN":
        return [lrn_ref_grad(x, dy, a)], []
    if kind == "UPSAMPLE":  # a second input only gives the size: no gradient
        c, h, w = x.shape[1:]
        sh, sw = a["scale"]
        if a["mode"] == "bilinear":
            dx = bilinear_ref_grad(x, dy, a["align_corners"])
        else:
            dx = dy.reshape(n, c, h, sh, w, sw).sum(axis=(3, 5))
        return [dx] + [np.zeros_like(t) for t in xs[1:]], []
    if kind == "ADD":
        return [dy] * len(xs), []
    if kind == "CONCAT":
        cuts = np.cumsum([t.shape[1] for t in xs])[:-1]
        return np.split(dy, cuts, axis=1), []
    if kind == "PRELU":
        slope = ps[0][:, None, None]
        return [np.where(x > 0, dy, slope * dy)], [(np.where(x > 0, 0, x) * dy).sum((0, 2, 3))]
    if kind == "SCALE":
        return [dy * ps[0][:, None, None]], [(dy * x).sum(axis=(0, 2, 3))]
    if kind == "MUL":
        a, b = xs
        return [_unbroadcast(dy * b, a.shape), _unbroadcast(dy * a, b.shape)], []
    if kind == "LN":
        dx, dg, db = ln_ref_grad(x, ps[0], a["eps"], dy)
        return [dx], [dg, db]
    if kind == "SLICE":
        dx = np.zeros_like(x)
        dx[:, a["from"] : a["to"]] = dy
        return [dx], []
    if kind == "SHUFFLE":
        g, (c, h, w) = a["groups"], x.shape[1:]
        return [dy.reshape(n, c // g, g, h, w).transpose(0, 2, 1, 3, 4).reshape(x.shape)], []
    if kind == "DROPPATH":
        return [dy * ctx["scale"][:, None, None, None] if ctx["training"] else dy], []
    raise KeyError(kind)
