"""draw_paint: the placed shapes of draw.py as a PNG (matplotlib, the `plot` extra), and an
offline HTML page holding the SVG and the report's table."""

from __future__ import annotations

from xml.sax.saxutils import escape

from .check import Checked
from .draw import FONT, Placed, Rect, Text, _head, _route, _trimmed, place, svg

# ---- paint: PNG through matplotlib ---------------------------------------------------------------

PNG_DPI = 100
MAX_PNG_PIXELS = 30_000_000


def png(checked: Checked, depth: int = 0, scale: float = 1.5) -> bytes:
    """The same picture as `svg`, painted by matplotlib (the `plot` extra)."""
    return render_png(place(checked, depth), scale)


def _matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            "drawing a PNG needs matplotlib, which is not installed: pip install 'cnnc[plot]' "
            "(or write an .svg, which needs nothing)"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return matplotlib, plt


def render_png(placed: Placed, scale: float = 1.5) -> bytes:
    """Unhinted text, so glyphs advance by the 0.602 em the layout measured with (hinting rounds
    each advance to whole pixels: 5% wider at 150 dpi, and text would overflow its box)."""
    matplotlib, _ = _matplotlib()
    with matplotlib.rc_context({"text.hinting": "none"}):
        return _paint_png(placed, scale)


def _paint_png(placed: Placed, scale: float) -> bytes:
    import io

    _, plt = _matplotlib()
    from matplotlib.patches import FancyBboxPatch, PathPatch, Polygon
    from matplotlib.path import Path as MPath

    w, h = placed.width, placed.height
    while w * h * scale * scale > MAX_PNG_PIXELS and scale > 0.25:
        scale /= 1.25
    dpi = PNG_DPI * scale
    figure = plt.figure(figsize=(w / PNG_DPI, h / PNG_DPI), dpi=dpi)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_xlim(0, w)
    axes.set_ylim(h, 0)
    axes.axis("off")
    points_per_px = 72 / PNG_DPI

    def rect(r: Rect, z: float) -> None:
        axes.add_patch(
            FancyBboxPatch(
                (r.x, r.y),
                r.w,
                r.h,
                boxstyle=f"round,pad=0,rounding_size={r.radius}",
                facecolor=r.fill if r.fill != "none" else "none",
                edgecolor=r.stroke,
                linewidth=r.width * points_per_px,
                linestyle=(0, tuple(float(v) for v in r.dash.split())) if r.dash else "solid",
                zorder=z,
            )
        )

    def text(t: Text, z: float) -> None:
        effects = None
        if t.halo:
            from matplotlib import patheffects

            effects = [patheffects.withStroke(linewidth=4 * points_per_px, foreground="white")]
        axes.text(
            t.x,
            t.y,
            t.text,
            fontsize=t.size * points_per_px,
            family="DejaVu Sans Mono",
            fontweight="bold" if t.bold else "normal",
            color=t.color,
            ha={"start": "left", "middle": "center", "end": "right"}[t.anchor],
            va="baseline",
            zorder=z,
            path_effects=effects,
        )

    for t in placed.header:
        text(t, 5)
    for _, r, label in placed.frames:
        rect(r, 1)
        text(label, 4)
    codes = {"M": MPath.MOVETO, "L": MPath.LINETO}
    for arrow in placed.arrows:
        colour = "#64748b" if arrow.skip else "#475569"
        vertices, kinds = [], []
        for command in _route(_trimmed(arrow.points)):
            if command[0] == "Q":
                vertices += [command[1:3], command[3:5]]
                kinds += [MPath.CURVE3, MPath.CURVE3]
            else:
                vertices.append(command[1:3])
                kinds.append(codes[command[0]])
        axes.add_patch(
            PathPatch(
                MPath(vertices, kinds),
                facecolor="none",
                edgecolor=colour,
                linewidth=1.3 * points_per_px,
                zorder=2,
            )
        )
        axes.add_patch(Polygon(_head(arrow.points), closed=True, color=colour, zorder=2))
    for box in placed.boxes:
        for r in placed.stacks.get(box.index, []):
            rect(r, 3)
        rect(placed.rects[box.index], 3)
        for t in placed.texts[box.index]:
            text(t, 4)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


# ---- HTML: the report's table and the diagram in one offline file --------------------------------


def html(checked: Checked, depth: int = 0) -> str:
    """One self-contained page: the diagram inline and the per-layer table with the totals."""
    from . import report

    built = report.build(checked)
    header, rows = report.layer_table(built)
    numeric = {0, 4, 5, 6}

    def cells(values, tag):
        return "".join(
            f"<{tag}{' class=num' * (i in numeric)}>{escape(v)}</{tag}>"
            for i, v in enumerate(values)
        )

    diagram = svg(checked, depth).split("\n", 1)[1]  # without the XML declaration
    body = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(checked.graph.name)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;color:#0f172a}"
        "table{border-collapse:collapse;font-family:" + FONT + ";font-size:12px}"
        "td,th{padding:2px 10px;border-bottom:1px solid #e2e8f0;text-align:left}"
        ".num{text-align:right}.diagram{overflow:auto;border:1px solid #e2e8f0;margin:1em 0}"
        "</style></head><body>",
        f"<h1>{escape(checked.graph.name)}</h1>",
        f'<div class="diagram">{diagram}</div>',
        "<table><thead><tr>" + cells(header, "th") + "</tr></thead><tbody>",
    ]
    body += ["<tr>" + cells(r, "td") + "</tr>" for r in rows]
    body.append("</tbody></table><table>")
    body += [f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in report.totals(built)]
    body += ["</table></body></html>", ""]
    return "\n".join(body)
