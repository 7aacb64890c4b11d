"""The layer registry: each kind's syntax, shape rule, parameters, cost and kernel ABI in one entry.

Shapes are tuples: (C, H, W) for feature maps, (F,) for flat vectors. Shape rules are small pure
functions of (attrs, input shapes) returning an `Inferred`: the output shape and the attributes
they resolved (groups, padding, filters); they raise ShapeError with the arithmetic that failed
and the smallest fix. The other rules (params, buffers, MACs, workspace) read those resolved
attributes. `ints` and `floats` name what the kind's kernels read from a plan row; abi.py
generates the row offsets from them. Adding a layer = one entry here (naming the kernels module)
+ its kernel pair and row adapters there + a row in the kernel test table.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import ShapeError

Shape = tuple[int, ...]
REQUIRED = object()


@dataclass(frozen=True)
class Option:
    """One argument of a layer kind and every way to write it.

    kind: "count" (positive int), "index" (int from 0), "pair" (int or AxB), "padding" (a pair,
    or TxLxBxR: top, left, bottom, right, ONNX's order of `pads`), "float", "bool", "choice".
    short: a prefix that sets it from one token (`s2` -> stride 2).
    words: bare words that set it to a value (`nobias` -> bias False, `max` -> mode "max").
    positional: a bare number sets it (`FC 120`, `DROPOUT 0.5`).
    """

    name: str
    kind: str
    default: Any = REQUIRED
    short: str | None = None
    words: dict[str, Any] = field(default_factory=dict)
    positional: bool = False
    help: str = ""


@dataclass(frozen=True)
class Inferred:
    """What a shape rule works out: the output shape and the attributes it resolved."""

    shape: Shape
    resolved: dict = field(default_factory=dict)  # e.g. groups for `dw`, the numbers of `same`
    rounded: str = ""  # the arithmetic, when a window does not divide its input evenly


@dataclass(frozen=True)
class Field:
    """One integer a kernel reads from its plan row, by name, and how the attributes give it."""

    name: str
    value: Callable[[dict], int]


def pair(attr: str) -> tuple[Field, Field]:
    """`kernel` -> kernel_h, kernel_w."""
    return Field(f"{attr}_h", lambda a: int(a[attr][0])), Field(
        f"{attr}_w", lambda a: int(a[attr][1])
    )


def whole(attr: str, codes: dict | None = None) -> tuple[Field]:
    """One integer: the attribute itself, a bool as 0/1, or a word's code in `codes`."""
    if codes is not None:
        return (Field(attr, lambda a: codes[a[attr]]),)
    return (Field(attr, lambda a: int(a[attr])),)


def same_shape(attrs: dict, ins: list[Shape]) -> Inferred:
    return Inferred(ins[0])


def nonnegative_shape(option: str) -> Callable[[dict, list[Shape]], Inferred]:
    """same_shape for an activation whose backward picks its branch from the output's sign:
    a negative `option` flips that sign, so the gradient would be wrong; refuse it."""

    def rule(attrs: dict, ins: list[Shape]) -> Inferred:
        if float(attrs[option]) < 0:
            raise ShapeError(
                f"{option}={attrs[option]:g} is negative; cnnc supports {option} >= 0 only",
                fix=f"use {option}={-float(attrs[option]):g} or another value >= 0",
            )
        return Inferred(ins[0])

    return rule


@dataclass(frozen=True)
class LayerKind:
    name: str
    summary: str
    options: tuple[Option, ...] = ()
    shape: Callable[[dict, list[Shape]], Inferred] = same_shape
    params: Callable[[dict, list[Shape], Shape], dict[str, Shape]] = lambda a, i, o: {}
    buffers: Callable[[dict, list[Shape], Shape], dict[str, Shape]] = lambda a, i, o: {}
    macs: Callable[[dict, list[Shape], Shape], int] = lambda a, i, o: 0
    window: Callable[[dict, list[Shape]], tuple] | None = None  # receptive-field step
    saves: frozenset[str] = frozenset()  # what backward reads: "input" and/or "output"
    arity: tuple[int, int | None] = (1, 1)  # fewest and most inputs (None: any number)
    ints: tuple[Field, ...] = ()  # the integers its kernels read, in row order
    floats: tuple[str, ...] = ()  # the float attributes its kernels read, in row order
    state_size: Callable[[dict, list[Shape], Shape], int] = lambda a, i, o: 0
    workspace: Callable[[dict, list[Shape], Shape], int] = lambda a, i, o: 0
    aux: bool = False  # keeps a per-sample buffer of the input's size from forward to backward
    spatial: bool = False  # needs a CxHxW input
    kernels: str = "activations"  # the runtime/kernels module whose NAME = (forward, backward)
    init: Callable[[dict], dict[str, float]] = lambda a: {}  # constant initial parameter values

    @property
    def merge(self) -> bool:
        """Takes only named branches, `KIND(a, b)`, never the tensor before it in a chain."""
        return self.arity[0] > 1

    @property
    def branches(self) -> bool:
        """May take named branches: a merge, or `UPSAMPLE(y, x)` beside `-> UPSAMPLE 2`."""
        return self.arity[1] != 1

    def int_values(self, attrs: dict) -> tuple[int, ...]:
        return tuple(f.value(attrs) for f in self.ints)

    def float_values(self, attrs: dict) -> tuple[float, ...]:
        return tuple(float(attrs[name]) for name in self.floats)


def fmt(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


def numel(shape: Shape) -> int:
    return math.prod(shape)


def _spatial(name: str, shape: Shape) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError(
            f"{name} needs a CxHxW feature map, but gets a flat vector of {shape[0]}",
            fix=f"put {name} before the first FC/FLATTEN, or drop it",
        )
    return shape


# ---- convolution -------------------------------------------------------------------------------


def _same_pad(kernel: int, dilation: int, axis: str) -> int:
    extent = dilation * (kernel - 1)
    if extent % 2:
        raise ShapeError(
            f"`same` padding needs an odd kernel extent, but the {axis} extent is {extent + 1}",
            fix="use an odd kernel size, or give the padding as a number (`p1`)",
        )
    return extent // 2


def _padding(attrs: dict) -> tuple[tuple[int, int], tuple[int, int]]:
    """(top, left) and (bottom, right) padding: `same`, one number, HxW or TxLxBxR."""
    pad = attrs["pad"]
    if pad == "same":
        if attrs["stride"] != (1, 1):
            raise ShapeError(
                "`same` padding keeps the size only at stride 1",
                fix="give the padding as a number (`p1`), or use `s1`",
            )
        same = (
            _same_pad(attrs["kernel"][0], attrs["dilation"][0], "height"),
            _same_pad(attrs["kernel"][1], attrs["dilation"][1], "width"),
        )
        return same, same
    return split_pads(pad)


def _window_out(
    name, size, kernel, stride, pad, dilation, axis, ceil=False, pad_end=None
) -> tuple[int, str]:
    """PyTorch's output size along one axis, and the arithmetic when it does not come out even;
    `pad_end` (default: `pad`) is the padding after the input, for asymmetric padding."""
    pad_end = pad if pad_end is None else pad_end
    pads = f"2*{pad}" if pad == pad_end else f"{pad} + {pad_end}"
    extent = dilation * (kernel - 1) + 1
    span_ = size + pad + pad_end - extent
    overhang = stride - 1 if ceil else 0  # ceil mode lets the last window hang over the end
    out = (span_ + overhang) // stride + 1
    if ceil and (out - 1) * stride >= size + pad:  # PyTorch: the last window must start inside
        out -= 1
    if out < 1:
        least = extent - overhang
        fix_pad = max(math.ceil((least - size) / 2), (extent - 1) // 2)
        fixed, _ = _window_out(name, size, kernel, stride, fix_pad, dilation, axis, ceil)
        raise ShapeError(
            f"{name} needs at least {least} {axis} "
            f"(kernel {'with dilation ' if dilation > 1 else ''}{extent}), "
            f"but its padded input is {size + pad + pad_end} ({size} + {pads})",
            fix=f"pad it (`p{fix_pad}` gives {fixed} {axis}) or use a smaller kernel",
            sizes=True,
        )
    arithmetic = f"({size} + {pads} - {extent}) / {stride} + 1 = {span_ / stride + 1:g} -> {out}"
    return out, "" if span_ % stride == 0 else arithmetic


def _rounded(rows: str, columns: str) -> str:
    if rows == columns:
        return rows
    return "; ".join(
        f"{axis}: {text}" for axis, text in (("rows", rows), ("columns", columns)) if text
    )


def conv_shape(attrs: dict, ins: list[Shape]) -> Shape:
    c, h, w = _spatial("CONV", ins[0])
    groups = c if attrs["groups"] == "dw" else attrs["groups"]
    filters = attrs["filters"] if attrs["filters"] is not None else c
    for what, count in (("input channels", c), ("filters", filters)):
        if count % groups:
            raise ShapeError(
                f"CONV with {groups} groups needs {what} divisible by {groups}, but has {count}",
                notes=[f"{count} / {groups} = {count / groups:g}"],
                fix=f"use a group count that divides both {c} and {filters}",
            )
    (ph, pw), (pb, pr) = _padding(attrs)
    (kh, kw), (sh, sw), (dh, dw) = attrs["kernel"], attrs["stride"], attrs["dilation"]
    if (kh, kw, sh, sw, ph, pw) == (1, 1, 1, 1, 0, 0) and (pb, pr) != (0, 0):
        raise ShapeError(  # the 1x1 fast path reads the input as its own column matrix
            "a 1x1 stride-1 CONV padded only at the bottom/right is not supported",
            fix="pad all four sides (`p1`), or give the padding to a neighbouring CONV",
        )
    name = describe("CONV", attrs)
    ho, rows = _window_out(name, h, kh, sh, ph, dh, "rows", pad_end=pb)
    wo, columns = _window_out(name, w, kw, sw, pw, dw, "columns", pad_end=pr)
    resolved = {"groups": groups, "pad": (ph, pw), "pad_end": (pb, pr), "filters": filters}
    return Inferred((filters, ho, wo), resolved, _rounded(rows, columns))


def conv_params(attrs, ins, out):
    kh, kw = attrs["kernel"]
    weight = (out[0], ins[0][0] // attrs["groups"], kh, kw)
    return {"weight": weight, "bias": (out[0],)} if attrs["bias"] else {"weight": weight}


def conv_macs(attrs, ins, out):
    kh, kw = attrs["kernel"]
    return numel(out) * (ins[0][0] // attrs["groups"]) * kh * kw


def conv_window(attrs, ins):
    (kh, kw), (dh, dw) = attrs["kernel"], attrs["dilation"]
    return (dh * (kh - 1) + 1, dw * (kw - 1) + 1, *attrs["stride"], 1)


CONV_INTS = (*pair("kernel"), *pair("stride"), *pair("pad"), *pair("dilation"))
CONV_INTS += (*whole("groups"), *whole("bias"))


def conv_workspace(attrs, ins, out):
    kh, kw = attrs["kernel"]
    k = ins[0][0] // attrs["groups"] * kh * kw
    weights = out[0] * k
    return 2 * k * out[1] * out[2] + weights + out[0]


def deconv_shape(attrs: dict, ins: list[Shape]) -> Shape:
    c, h, w = _spatial("DECONV", ins[0])
    groups = c if attrs["groups"] == "dw" else attrs["groups"]
    filters = attrs["filters"]
    if filters is None:
        raise ShapeError("DECONV needs its output channels", fix="e.g. `DECONV 32@2x2 s2`")
    if c % groups or filters % groups:
        raise ShapeError(
            f"DECONV with {groups} groups needs channels divisible by {groups} "
            f"(in {c}, out {filters})",
            fix="use a group count that divides both channel counts",
        )
    (kh, kw), (sh, sw), (dh, dw) = attrs["kernel"], attrs["stride"], attrs["dilation"]
    if attrs["pad"] == "same":
        raise ShapeError("DECONV does not take `same` padding", fix="give the padding as a number")
    ph, pw = attrs["pad"]
    oph, opw = attrs["outpad"]
    if oph >= max(sh, dh) or opw >= max(sw, dw):
        raise ShapeError(
            "DECONV output padding must be smaller than the stride or the dilation",
            fix=f"use `op{min(max(sh, dh), max(sw, dw)) - 1}` or less",
        )
    ho = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    wo = (w - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    if ho < 1 or wo < 1:
        raise ShapeError(
            f"DECONV output would be {ho}x{wo}",
            notes=[f"({h} - 1)*{sh} - 2*{ph} + {dh}*({kh} - 1) + {oph} + 1 = {ho}"],
            fix="reduce the padding",
            sizes=True,
        )
    return Inferred((filters, ho, wo), {"groups": groups, "pad": (ph, pw)})


def deconv_params(attrs, ins, out):
    kh, kw = attrs["kernel"]
    weight = (ins[0][0], out[0] // attrs["groups"], kh, kw)
    return {"weight": weight, "bias": (out[0],)} if attrs["bias"] else {"weight": weight}


def deconv_macs(attrs, ins, out):
    kh, kw = attrs["kernel"]
    return numel(ins[0]) * (out[0] // attrs["groups"]) * kh * kw


def deconv_window(attrs, ins):
    (kh, kw), (sh, sw), (dh, dw) = attrs["kernel"], attrs["stride"], attrs["dilation"]
    return (-(-(dh * (kh - 1) + 1) // sh), -(-(dw * (kw - 1) + 1) // sw), sh, sw, -1)


def deconv_workspace(attrs, ins, out):
    kh, kw = attrs["kernel"]
    k = out[0] // attrs["groups"] * kh * kw
    return 2 * k * ins[0][1] * ins[0][2] + ins[0][0] * k + out[0]


CONV_OPTIONS = (
    Option("filters", "count", None, help="filters@kernel, e.g. 6@5x5 (default: keep channels)"),
    Option("kernel", "pair", help="kernel size, e.g. 5x5 or 3"),
    Option("stride", "pair", (1, 1), short="s"),
    Option(
        "pad",
        "padding",
        (0, 0),
        short="p",
        words={"same": "same", "valid": (0, 0)},
        help="N, HxW, or TxLxBxR: top, left, bottom, right (ONNX's order)",
    ),
    Option("dilation", "pair", (1, 1), short="d"),
    Option("groups", "count", 1, short="g", words={"dw": "dw"}),
    Option("bias", "bool", True, words={"nobias": False, "bias": True}),
)

# a transposed convolution crops both sides alike: no four-sided padding
DECONV_PAD = Option("pad", "pair", (0, 0), short="p", words={"same": "same", "valid": (0, 0)})

# ---- pooling -----------------------------------------------------------------------------------

POOL_MODES = {"max": 0, "avg": 1, "sum": 2}


def pool_shape(attrs: dict, ins: list[Shape]) -> Shape:
    c, h, w = _spatial("POOL", ins[0])
    whole_input = {"stride": (1, 1), "pad": (0, 0), "pad_end": (0, 0), "dilation": (1, 1)}
    if attrs["global"]:
        return Inferred((c, 1, 1), {"kernel": (h, w), **whole_input})
    if attrs["kernel"] is None:
        raise ShapeError("POOL needs a window size such as 2x2, or `global`", fix="POOL max 2x2 s2")
    if attrs["adaptive"]:
        return adaptive_pool_shape(attrs, (c, h, w), whole_input)
    kernel, dilation = attrs["kernel"], attrs["dilation"]
    stride = attrs["stride"] or kernel
    if dilation != (1, 1) and attrs["mode"] != "max":
        raise ShapeError(
            f"POOL {attrs['mode']} takes no dilation (PyTorch dilates max pooling only)",
            fix="drop the dilation, or use `POOL max`",
        )
    if attrs["pad"] == "same":
        same = (
            _same_pad(kernel[0], dilation[0], "height"),
            _same_pad(kernel[1], dilation[1], "width"),
        )
        pad, pad_end = same, same
    else:
        pad, pad_end = split_pads(attrs["pad"])
    if max(pad[0], pad_end[0]) * 2 > kernel[0] or max(pad[1], pad_end[1]) * 2 > kernel[1]:
        shown = fmt(pad) if pad == pad_end else fmt(pad + pad_end)
        raise ShapeError(
            f"POOL padding {shown} is more than half the window {fmt(kernel)}",
            fix="pad at most half the window, as PyTorch requires",
        )
    name = describe("POOL", attrs)
    ceil = attrs["ceil"]
    ho, rows = _window_out(name, h, kernel[0], stride[0], pad[0], dilation[0], "rows", ceil,
                           pad_end[0])  # fmt: skip
    wo, columns = _window_out(name, w, kernel[1], stride[1], pad[1], dilation[1], "columns", ceil,
                              pad_end[1])  # fmt: skip
    resolved = {"kernel": kernel, "stride": stride, "pad": pad, "pad_end": pad_end}
    return Inferred((c, ho, wo), resolved, _rounded(rows, columns))


POOL_OPTIONS = (
    Option("mode", "choice", "max", words={m: m for m in POOL_MODES}),
    Option("adaptive", "bool", False, words={"adaptive": True}, help="HxW is the output size"),
    Option("kernel", "pair", None, help="the window, or the output size with `adaptive`"),
    Option("stride", "pair", None, short="s", help="default: the window size"),
    Option(
        "pad",
        "padding",
        (0, 0),
        short="p",
        words={"same": "same", "valid": (0, 0)},
        help="N, HxW, or TxLxBxR: top, left, bottom, right (ONNX's order)",
    ),
    Option("ceil", "bool", False, words={"ceil": True, "floor": False}),
    Option("global", "bool", False, words={"global": True}),
    Option("count_pad", "bool", True, words={"exclude_pad": False}),
    Option("dilation", "pair", (1, 1), short="d", help="max pooling only"),
)


# ---- resizing, adaptive pooling, four-sided padding ---------------------------------------------


def split_pads(pad: tuple[int, ...]) -> tuple[tuple[int, int], tuple[int, int]]:
    """(top, left), (bottom, right) of a padding written N, HxW, or TxLxBxR (ONNX's `pads` order
    for 2-D: x1_begin, x2_begin, x1_end, x2_end)."""
    if len(pad) == 4:
        return (pad[0], pad[1]), (pad[2], pad[3])
    return tuple(pad), tuple(pad)


def adaptive_windows(size: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive pooling windows on one axis: [floor(i*size/out), ceil((i+1)*size/out))."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def adaptive_pool_shape(attrs: dict, chw: Shape, whole_input: dict) -> Inferred:
    c, h, w = chw
    unused = (None, (1, 1), False)
    given = [f"`{o}`" for o in ("stride", "dilation", "ceil") if attrs[o] not in unused]
    if attrs["pad"] != (0, 0):
        given.append("`pad`")
    if given:
        raise ShapeError(
            f"adaptive POOL chooses its own windows and takes no {', '.join(given)}",
            fix=f"write `POOL {attrs['mode']} adaptive {fmt(attrs['kernel'])}` alone",
        )
    ho, wo = attrs["kernel"]
    widest = (
        max(b - a for a, b in adaptive_windows(h, ho)),
        max(b - a for a, b in adaptive_windows(w, wo)),
    )
    return Inferred((c, ho, wo), {**whole_input, "kernel": widest, "adaptive_out": (ho, wo)})


UPSAMPLE_MODES = {"nearest": 0, "bilinear": 1}


def upsample_shape(attrs, ins):
    """By an integer scale, or to the size of a second input: `UPSAMPLE(y, x) bilinear`."""
    c, h, w = _spatial("UPSAMPLE", ins[0])
    bilinear = attrs["mode"] == "bilinear"
    if attrs["align_corners"] and not bilinear:
        raise ShapeError(
            "align_corners is an option of bilinear upsampling",
            fix="write `UPSAMPLE bilinear align_corners ...`, or drop align_corners",
        )
    if len(ins) > 2:
        raise ShapeError(
            f"UPSAMPLE(y, x) resizes y to the size of x, but gets {len(ins)} inputs",
            fix="`UPSAMPLE(y, x)`: the tensor first, the one whose size it takes second",
        )
    if len(ins) == 1:
        sh, sw = attrs["scale"]
        return Inferred((c, h * sh, w * sw), {"scale": (sh, sw)})
    if attrs["scale"] != (2, 2):
        raise ShapeError(
            "UPSAMPLE(y, x) takes the size of x and no scale",
            fix="drop the scale, or write `y -> UPSAMPLE ...` to scale y",
        )
    if len(ins[1]) != 3:
        raise ShapeError(
            f"UPSAMPLE(y, x) takes the size of x, but x is a flat vector of {ins[1][0]}",
            fix="name a CxHxW tensor as the second input",
        )
    ho, wo = ins[1][1:]
    if not bilinear and (ho % h or wo % w):
        raise ShapeError(
            f"nearest UPSAMPLE scales by whole numbers, but {h}x{w} -> {ho}x{wo} is not one",
            fix="use `UPSAMPLE(y, x) bilinear`",
            sizes=True,
        )
    scale = (ho // h, wo // w) if not bilinear else (max(ho // h, 1), max(wo // w, 1))
    return Inferred((c, ho, wo), {"scale": scale})


UPSAMPLE_OPTIONS = (
    Option("scale", "pair", (2, 2), positional=True, help="default 2; none with a size input"),
    Option("mode", "choice", "nearest", words={m: m for m in UPSAMPLE_MODES}),
    Option("align_corners", "bool", False, words={"align_corners": True}, help="bilinear only"),
)
UPSAMPLE_INTS = (*pair("scale"), *whole("mode", UPSAMPLE_MODES), *whole("align_corners"))
POOL_INTS = (*pair("kernel"), *pair("stride"), *pair("pad"), *whole("mode", POOL_MODES))
POOL_INTS += (*whole("count_pad"), *pair("pad_end"), *pair("dilation"), *whole("adaptive"))


def pool_window(attrs, ins):
    """Receptive-field step: the dilated window (an adaptive pool's widest window)."""
    (kh, kw), (dh, dw) = attrs["kernel"], attrs["dilation"]
    if attrs["adaptive"]:
        (h, w), (ho, wo) = ins[0][1:], attrs["adaptive_out"]
        return (kh, kw, max(h // ho, 1), max(w // wo, 1), 1)
    return (dh * (kh - 1) + 1, dw * (kw - 1) + 1, *attrs["stride"], 1)


# ---- fully connected, shape plumbing -------------------------------------------------------------


def fc_params(attrs, ins, out):
    weight = (attrs["units"], numel(ins[0]))
    return {"weight": weight, "bias": (attrs["units"],)} if attrs["bias"] else {"weight": weight}


def flat_window(attrs, ins):
    """FC and FLATTEN see the whole feature map: the receptive field grows to cover it."""
    shape = ins[0]
    h, w = (shape[1], shape[2]) if len(shape) == 3 else (1, 1)
    return (h, w, h, w, 1)


def add_shape(attrs, ins):
    first = ins[0]
    if any(other != first for other in ins[1:]):
        spatial = any(other[1:] != first[1:] for other in ins)
        if spatial and len(first) == 3 and all(len(o) == 3 for o in ins):
            small = min(ins, key=lambda s: s[1])
            big = max(ins, key=lambda s: s[1])
            stride = big[1] // small[1] if small[1] and big[1] % small[1] == 0 else 2
            fix = f"project the larger shortcut (`CONV {small[0]}@1x1 s{stride}` on it)"
        elif spatial:
            fix = "give both branches one shape before the ADD"
        else:
            channels = max(s[0] for s in ins)
            fix = (
                f"project the narrower branch to {channels} channels (`CONV {channels}@1x1` on it)"
            )
        raise ShapeError(
            f"ADD needs inputs of one shape, but gets {' and '.join(fmt(s) for s in ins)}",
            fix=fix,
            sizes=spatial,
        )
    return Inferred(first)


def concat_shape(attrs, ins):
    if any(len(s) != len(ins[0]) for s in ins) or any(s[1:] != ins[0][1:] for s in ins):
        raise ShapeError(
            "CONCAT joins channels and needs one spatial size, but gets "
            + ", ".join(fmt(s) for s in ins),
            fix="pool, pad or upsample the branches to the same height and width",
            sizes=True,
        )
    return Inferred((sum(s[0] for s in ins), *ins[0][1:]))


def bn_shape(attrs, ins):
    if attrs["eps"] <= 0:
        raise ShapeError(f"BN eps must be positive, but is {attrs['eps']:g}", fix="e.g. `eps=1e-5`")
    if not 0 <= attrs["momentum"] <= 1:
        raise ShapeError(
            f"BN momentum must be in [0, 1], but is {attrs['momentum']:g}",
            fix="e.g. `momentum=0.1`",
        )
    return Inferred(ins[0])


def bn_params(attrs, ins, out):
    return {"weight": (ins[0][0],), "bias": (ins[0][0],)}


def bn_buffers(attrs, ins, out):
    return {"running_mean": (ins[0][0],), "running_var": (ins[0][0],)}


def _rate(value: float, name: str) -> None:
    if not 0 <= value < 1:
        raise ShapeError(f"{name} must be in [0, 1), but is {value:g}", fix=f"e.g. `{name} 0.5`")


def dropout_shape(attrs, ins):
    _rate(attrs["rate"], "DROPOUT")
    return Inferred(ins[0])


def lrn_shape(attrs, ins):
    _spatial("LRN", ins[0])
    return Inferred(ins[0])


# ---- today's architectures: gated activations, gates, channel norms, slicing, stochastic depth


def _gate(shape: Shape) -> bool:
    """One value per channel: Cx1x1 or a flat C, as a squeeze-and-excitation branch makes it."""
    return numel(shape) == shape[0]


def mul_shape(attrs, ins):
    if len(ins) != 2:
        raise ShapeError(
            f"MUL multiplies two tensors, but gets {len(ins)}",
            fix="multiply two at a time: `MUL(a, b) -> ab`, then `MUL(ab, c)`",
        )
    a, b = ins
    if a == b:
        return Inferred(a)
    if a[0] == b[0] and (_gate(a) or _gate(b)):
        if _gate(a) and _gate(b):  # Cx1x1 and a flat C: keep the feature map's form
            return Inferred(a if len(a) == 3 else b)
        return Inferred(b if _gate(a) else a)
    if a[0] != b[0]:
        channels = a[0] if numel(b) <= numel(a) else b[0]
        fix = f"give the gate {channels} channels (`CONV {channels}@1x1` or `FC {channels}`)"
    else:
        fix = "pool the gate to one value per channel (`POOL avg global`) or give both one size"
    raise ShapeError(
        f"MUL needs two tensors of one shape, or a Cx1x1 gate with the other's channels, "
        f"but gets {fmt(a)} and {fmt(b)}",
        fix=fix,
        sizes=a[0] == b[0],
    )


def channel_params(attrs, ins, out):
    """One learned value per channel (or per feature of a flat vector)."""
    return {"weight": (ins[0][0],)}


def ln_shape(attrs, ins):
    if attrs["eps"] <= 0:
        raise ShapeError(f"LN eps must be positive, but is {attrs['eps']:g}", fix="e.g. `eps=1e-6`")
    return Inferred(ins[0])


LN_BLOCK = 256  # pixels per unit of LN's kernels (runtime/kernels/norm.py)


def ln_workspace(attrs, ins, out):
    """Per thread: its dweight and dbias (2C), and 4 statistics per pixel of a block."""
    pixels = numel(ins[0]) // ins[0][0]
    return 2 * ins[0][0] + 4 * min(pixels, LN_BLOCK)


def slice_shape(attrs, ins):
    c = ins[0][0]
    start, stop = attrs["from"], c if attrs["to"] is None else attrs["to"]
    if not start < stop <= c:
        what = (
            f"`to={stop}` is past the {c} channels of its {fmt(ins[0])} input"
            if stop > c
            else f"`from={start}` is not below `to={stop}`"
        )
        raise ShapeError(
            f"SLICE takes channels [from, to) of its input, but {what}",
            fix=f"pick 0 <= from < to <= {c}, e.g. `SLICE from=0 to={max(c // 2, 1)}`",
        )
    return Inferred((stop - start, *ins[0][1:]), {"to": stop})


def shuffle_shape(attrs, ins):
    c, groups = ins[0][0], attrs["groups"]
    if c % groups:
        divisors = [g for g in range(2, c + 1) if c % g == 0][:4]
        raise ShapeError(
            f"SHUFFLE {groups} splits the channels into {groups} groups, but {c} channels "
            f"do not divide by {groups}",
            notes=[f"{c} / {groups} = {c / groups:g}"],
            fix=f"use a group count that divides {c} (e.g. {', '.join(map(str, divisors))})"
            if divisors
            else "shuffle a tensor with more than one channel",
        )
    return Inferred(ins[0])


def droppath_shape(attrs, ins):
    _rate(attrs["rate"], "DROPPATH")
    return Inferred(ins[0])


MANY_INPUTS = (2, None)

KINDS: tuple[LayerKind, ...] = (
    LayerKind(
        "CONV",
        "2-D convolution",
        CONV_OPTIONS,
        conv_shape,
        conv_params,
        macs=conv_macs,
        window=conv_window,
        saves=frozenset({"input"}),
        ints=CONV_INTS,
        workspace=conv_workspace,
        spatial=True,
        kernels="conv",
    ),
    LayerKind(
        "DECONV",
        "transposed 2-D convolution",
        CONV_OPTIONS[:3]
        + (DECONV_PAD,)
        + CONV_OPTIONS[4:6]
        + (Option("outpad", "pair", (0, 0), short="op"), CONV_OPTIONS[6]),
        deconv_shape,
        deconv_params,
        macs=deconv_macs,
        window=deconv_window,
        saves=frozenset({"input"}),
        ints=CONV_INTS + pair("outpad"),
        workspace=deconv_workspace,
        spatial=True,
        kernels="conv",
    ),
    LayerKind(
        "POOL",
        "max, average or sum pooling",
        POOL_OPTIONS,
        pool_shape,
        window=pool_window,
        saves=frozenset({"input", "output"}),
        ints=POOL_INTS,
        spatial=True,
        kernels="pool",
    ),
    LayerKind(
        "FC",
        "fully connected (flattens its input)",
        (Option("units", "count", positional=True), CONV_OPTIONS[6]),
        lambda a, i: Inferred((a["units"],)),
        fc_params,
        macs=lambda a, i, o: numel(i[0]) * a["units"],
        window=flat_window,
        saves=frozenset({"input"}),
        ints=whole("bias"),
        kernels="fc",
    ),
    LayerKind(
        "FLATTEN", "flatten to a vector", (), lambda a, i: Inferred((numel(i[0]),)), kernels="misc"
    ),
    LayerKind("RELU", "max(x, 0)", saves=frozenset({"output"})),
    LayerKind("RELU6", "min(max(x, 0), 6)", saves=frozenset({"output"})),
    LayerKind(
        "LEAKYRELU",
        "x if x > 0 else slope * x",
        (Option("slope", "float", 0.01, positional=True),),
        nonnegative_shape("slope"),
        saves=frozenset({"output"}),
        floats=("slope",),
    ),
    LayerKind(
        "ELU",
        "x if x > 0 else alpha * (exp(x) - 1)",
        (Option("alpha", "float", 1.0, positional=True),),
        nonnegative_shape("alpha"),
        saves=frozenset({"output"}),
        floats=("alpha",),
    ),
    LayerKind("TANH", "hyperbolic tangent", saves=frozenset({"output"})),
    LayerKind("SIGMOID", "logistic sigmoid", saves=frozenset({"output"})),
    LayerKind("SOFTMAX", "softmax over channels", saves=frozenset({"output"})),
    # -- today's architectures (issue 9): one block, kept together
    LayerKind("SILU", "x * sigmoid(x) (swish)", saves=frozenset({"input"})),
    LayerKind("HSWISH", "x * relu6(x + 3) / 6 (hard swish)", saves=frozenset({"input"})),
    LayerKind("HSIGMOID", "relu6(x + 3) / 6 (hard sigmoid)", saves=frozenset({"output"})),
    LayerKind(
        "GELU",
        "x * Phi(x), exact (erf) or the tanh approximation",
        (Option("tanh", "bool", False, words={"tanh": True, "erf": False}),),
        saves=frozenset({"input"}),
        floats=("tanh",),
    ),
    LayerKind("MISH", "x * tanh(softplus(x))", saves=frozenset({"input"})),
    LayerKind(
        "PRELU",
        "x if x > 0 else slope_c * x, a learned slope per channel",
        (Option("init", "float", 0.25, help="the slopes' initial value"),),
        params=channel_params,
        saves=frozenset({"input"}),
        init=lambda a: {"weight": a["init"]},
        kernels="channels",
    ),
    LayerKind(
        "SCALE",
        "x * scale_c, a learned scale per channel (layer scale)",
        (Option("init", "float", 1.0, help="the scales' initial value"),),
        params=channel_params,
        saves=frozenset({"input"}),
        init=lambda a: {"weight": a["init"]},
        kernels="channels",
    ),
    LayerKind(
        "MUL",
        "elementwise product; a Cx1x1 gate scales every pixel of its channel",
        (),
        mul_shape,
        saves=frozenset({"input"}),
        arity=(2, 2),
        kernels="channels",
    ),
    LayerKind(
        "LN",
        "layer normalisation over the channels of each pixel (a flat vector: all of it)",
        (Option("eps", "float", 1e-5),),
        ln_shape,
        params=bn_params,
        saves=frozenset({"input"}),
        floats=("eps",),
        workspace=ln_workspace,
        kernels="norm",
    ),
    LayerKind(
        "SLICE",
        "channels [from, to) of its input",
        (
            Option("from", "index", 0, help="the first channel"),
            Option("to", "index", None, help="one past the last channel (default: the last)"),
        ),
        slice_shape,
        ints=(Field("start", lambda a: a["from"]), Field("stop", lambda a: a["to"])),
        kernels="channels",
    ),
    LayerKind(
        "SHUFFLE",
        "channel shuffle across groups (ShuffleNet)",
        (Option("groups", "count", positional=True),),
        shuffle_shape,
        ints=whole("groups"),
        kernels="channels",
    ),
    LayerKind(
        "DROPPATH",
        "stochastic depth: drops a whole sample's branch while training",
        (Option("rate", "float", positional=True),),
        droppath_shape,
        floats=("rate",),
        kernels="droppath",
    ),
    # -- end of the issue 9 block
    LayerKind(
        "BN",
        "batch normalisation over channels",
        (Option("eps", "float", 1e-5), Option("momentum", "float", 0.1)),
        bn_shape,
        params=bn_params,
        buffers=bn_buffers,
        saves=frozenset({"input"}),
        floats=("eps", "momentum"),
        state_size=lambda a, i, o: 4 * i[0][0],
        kernels="norm",
    ),
    LayerKind(
        "DROPOUT",
        "inverted dropout",
        (Option("rate", "float", 0.5, positional=True),),
        dropout_shape,
        floats=("rate",),
        aux=True,
        kernels="misc",
    ),
    LayerKind(
        "LRN",
        "local response normalisation across channels",
        (
            Option("size", "count", 5, positional=True),
            Option("alpha", "float", 1e-4),
            Option("beta", "float", 0.75),
            Option("k", "float", 1.0),
        ),
        lrn_shape,
        saves=frozenset({"input", "output"}),
        ints=whole("size"),
        floats=("alpha", "beta", "k"),
        spatial=True,
        kernels="norm",
    ),
    LayerKind(
        "UPSAMPLE",
        "nearest or bilinear upsampling, by a scale or to a second input's size",
        UPSAMPLE_OPTIONS,
        upsample_shape,
        window=lambda a, i: (1, 1, *a["scale"], -1),
        arity=(1, 2),
        ints=UPSAMPLE_INTS,
        spatial=True,
        kernels="misc",
    ),
    LayerKind(
        "ADD", "elementwise sum of branches", (), add_shape, arity=MANY_INPUTS, kernels="misc"
    ),
    LayerKind(
        "CONCAT",
        "channel concatenation of branches",
        (),
        concat_shape,
        arity=MANY_INPUTS,
        kernels="misc",
    ),
)

REGISTRY: dict[str, LayerKind] = {kind.name: kind for kind in KINDS}
KIND_INDEX: dict[str, int] = {kind.name: index for index, kind in enumerate(KINDS)}


def describe(kind_name: str, attrs: dict) -> str:
    """The layer as a reader would write it: keyword plus every argument that is not a default."""
    if kind_name == "INPUT":
        return "input"
    kind = REGISTRY[kind_name]
    parts = [kind_name]
    for option in kind.options:
        value = attrs.get(option.name, option.default)
        if option.name == "filters" and value is not None:
            parts.append(f"{value}@{fmt(attrs['kernel'])}")
            continue
        if option.name == "kernel" and attrs.get("filters") is not None:
            continue
        if (value == option.default and option.kind != "choice") or value is None:
            continue
        word = next((w for w, v in option.words.items() if v == value), None)
        if word is not None:
            parts.append(word)
        elif isinstance(value, tuple):
            text = str(value[0]) if len(set(value)) == 1 else fmt(value)
            if option.name == "kernel" or option.positional:
                parts.append(fmt(value))
            else:
                parts.append(f"{option.short}{text}" if option.short else f"{option.name}={text}")
        elif option.positional:
            parts.append(f"{value:g}" if isinstance(value, float) else str(value))
        else:
            parts.append(
                f"{option.name}={value:g}" if isinstance(value, float) else f"{option.name}={value}"
            )
    return " ".join(parts)
