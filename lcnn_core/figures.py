"""The claims ledger as a reader sees it first: a forest plot and a compact table.

Both take the frame of :func:`lcnn_core.report.ledger` (one row per claim × test × scale, with the
unformatted ``effect``, ``estimate``, ``low``, ``high`` and ``paper_value``) and compute nothing
new: every number is the verdict's.

- :func:`ledger_forest`: one row per ledger row, grouped by claim and test; our estimate with its
  95 % interval (a hollow marker where there is none), the paper's value (for claim 5 our limit),
  the no-effect line, the verdict as colour and label. Ratios (model / baseline) on a log axis,
  differences in points on a linear one, in two panels; the "same accuracy" rows shade the
  tolerance ±``ACC_TOLERANCE``.
- :func:`ledger_table`: the same rows as an HTML table of five columns (test, scale, ours [CI],
  paper, verdict) under one heading row per claim; :func:`ledger_details` the rest of each row
  (seeds, images, why, method, page) for a collapsed block.
- :func:`folded`: a collapsed block around a result page's secondary table.

matplotlib only (no torch, no seaborn): the book's reading path stays light.
"""
import html
import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.transforms import blended_transform_factory

from .reference import ACC_TOLERANCE

# colour-blind-safe (Okabe–Ito): bluish green, vermillion, grey; the same in the figure and the table
VERDICT_COLOURS = {"reproduced": "#009E73", "not reproduced": "#D55E00", "inconclusive": "#8C8C8C"}
VERDICT_MARKS = {"reproduced": "✓", "not reproduced": "✗", "inconclusive": "?"}
PANELS = (("ratio", "ratio model / baseline (log scale; 1 = no effect)", 1.0),
          ("difference", "difference model − baseline (points; 0 = no effect)", 0.0))
ROW_IN = 0.2  # inches per line of the plot (a row or a heading)


def ordered(ledger):
    """The ledger's rows by claim, then test (in the order the ledger first names it), then scale
    (in ledger order): the order of the forest plot and of the compact table."""
    first = {t: i for i, t in reversed(list(enumerate(ledger.test)))}
    return (ledger.assign(_order=ledger.test.map(first), _row=range(len(ledger)))
            .sort_values(["claim", "_order", "_row"], kind="stable").drop(columns=["_order", "_row"]))


def _lines(rows):
    """[(kind, label, row)]: a heading line per (claim, test), then one line per scale."""
    out, last = [], None
    for _, row in ordered(rows).iterrows():
        if (row.claim, row.test) != last:
            out.append(("heading", f"{row.claim} · {row.test}", None))
            last = (row.claim, row.test)
        out.append(("row", row.scale, row))
    return out


def _is_equivalence(row):
    """A "same accuracy" row (verdicts.equivalent): the accuracy of two models, not an attack's."""
    return row.effect == "difference" and str(row.test).startswith("accuracy")


def ledger_forest(ledger, width=8.0):
    """The forest plot of the ledger (a matplotlib Figure); rows without an estimate are left out."""
    ledger = ledger[np.isfinite(ledger.estimate.astype(float))]
    panels = [(kind, xlabel, null, ledger[ledger.effect == kind]) for kind, xlabel, null in PANELS]
    panels = [p for p in panels if len(p[3])]
    lines = [_lines(p[3]) for p in panels]
    heights = [len(l) + 1.2 for l in lines]  # + room for the axis labels
    fig, axes = plt.subplots(len(panels), 1, figsize=(width, ROW_IN * sum(heights) + 0.9),
                             gridspec_kw={"height_ratios": heights, "hspace": 4.5 / np.mean(heights)}, squeeze=False)
    for ax, (kind, xlabel, null, rows), ls in zip(axes[:, 0], panels, lines):
        _panel(ax, kind, xlabel, null, ls)
    handles = [Line2D([], [], color=c, marker="o", lw=1.6, label=o) for o, c in VERDICT_COLOURS.items()]
    handles += [Line2D([], [], color="black", marker="|", ms=11, mew=1.8, ls="", label="paper (claim 5: our limit)"),
                Line2D([], [], color="0.35", marker="o", mfc="white", ls="", label="no interval (one seed)")]
    fig.legend(handles=handles, loc="upper center", ncol=3, fontsize=8.5, frameon=False, bbox_to_anchor=(0.5, 1.0))
    fig.subplots_adjust(left=0.4, right=0.82, top=1 - 0.75 / fig.get_figheight(), bottom=0.5 / fig.get_figheight())
    return fig


def _panel(ax, kind, xlabel, null, lines):
    n = len(lines)
    label_at = blended_transform_factory(ax.transAxes, ax.transData)
    ax.set_ylim(n - 0.4, -0.6)
    if kind == "ratio":
        ax.set_xscale("log")
    values = []
    for y, (what, label, row) in enumerate(lines):
        if what == "heading":
            heading_at = blended_transform_factory(ax.figure.transFigure, ax.transData)
            ax.text(0.015, y, label, transform=heading_at, ha="left", va="center", fontsize=8.5, weight="bold")
            if y:
                ax.axhline(y - 0.5, color="0.85", lw=0.6)
            continue
        colour = VERDICT_COLOURS.get(row.verdict, "black")
        lo, hi = float(row.low), float(row.high)
        has_ci = math.isfinite(lo) and math.isfinite(hi)
        if _is_equivalence(row):
            ax.fill_betweenx([y - 0.42, y + 0.42], -ACC_TOLERANCE, ACC_TOLERANCE, color="0.9", lw=0, zorder=0)
        if has_ci:
            ax.plot([lo, hi], [y, y], color=colour, lw=1.8, solid_capstyle="butt", zorder=2)
            values += [lo, hi]
        ax.plot(float(row.estimate), y, "o", ms=4.5, color=colour, mfc=colour if has_ci else "white", mew=1.3, zorder=3)
        values.append(float(row.estimate))
        if math.isfinite(float(row.paper_value)):
            ax.plot(float(row.paper_value), y, "|", color="black", ms=9, mew=1.6, zorder=4)
            values.append(float(row.paper_value))
        ax.text(-0.02, y, label, transform=label_at, ha="right", va="center", fontsize=8)
        ax.text(1.015, y, f"{VERDICT_MARKS.get(row.verdict, '')} {row.verdict}", transform=label_at, ha="left",
                va="center", fontsize=8, color=colour, weight="bold")
    ax.axvline(null, color="black", lw=0.8, ls="--", zorder=1)
    values = np.array(values + [null])
    if kind == "ratio":
        lo, hi = np.log10(values.min()), np.log10(values.max())
        pad = 0.06 * (hi - lo or 1)
        ax.set_xlim(10 ** (lo - pad), 10 ** (hi + pad))
    else:
        lo, hi = min(values.min(), -ACC_TOLERANCE), max(values.max(), ACC_TOLERANCE)
        pad = 0.04 * (hi - lo)
        ax.set_xlim(lo - pad, hi + pad)
    ax.set_yticks([])
    ax.set_xlabel(xlabel, fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", color="0.92", lw=0.6)
    ax.set_axisbelow(True)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)


def verdict_badge(outcome):
    """The verdict as a coloured label (CSS class lcnn-verdict, book/_static/lcnn.css)."""
    slug = outcome.replace(" ", "-")
    return (f'<span class="lcnn-verdict lcnn-verdict-{slug}" style="color: {VERDICT_COLOURS.get(outcome, "inherit")}">'
            f"{VERDICT_MARKS.get(outcome, '')} {html.escape(outcome)}</span>")


def ledger_table(ledger, claims):
    """The compact ledger (HTML): one heading row per claim (its number and ``claims[n]``), then
    for each test (named once, ``rowspan``) one row per scale with ours [CI], paper and verdict,
    in the order of the forest plot."""
    out = ['<table class="table lcnn-ledger">',
           "<thead><tr><th>test</th><th>scale</th><th>ours [95% CI]</th><th>paper</th><th>verdict</th></tr></thead><tbody>"]
    for claim, rows in ordered(ledger).groupby("claim", sort=False):
        out.append(f'<tr class="lcnn-claim"><th colspan="5">Claim {claim}: {html.escape(claims.get(claim, ""))}</th></tr>')
        for test, group in rows.groupby("test", sort=False):
            for i, (_, row) in enumerate(group.iterrows()):
                first = f'<td rowspan="{len(group)}">{html.escape(test)}</td>' if i == 0 else ""
                out.append(f"<tr>{first}<td>{html.escape(row.scale)}</td>"
                           f'<td class="lcnn-nowrap">{html.escape(row["ours (95% CI)"])}</td>'
                           f"<td>{html.escape(str(row.paper))}</td><td>{verdict_badge(row.verdict)}</td></tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def ledger_details(ledger):
    """The rest of each ledger row (HTML): test, scale and preset, ours / paper, seeds, images,
    why, method, and a link to the page that shows it."""
    out = ['<table class="table lcnn-ledger-details">',
           "<thead><tr><th>claim, test, scale</th><th>ours / paper</th><th>seeds</th><th>images</th>"
           "<th>why</th><th>method</th></tr></thead><tbody>"]
    for _, row in ledger.iterrows():
        link = f'<a href="{row.page}.html">{html.escape(row.page.replace("_", " "))}</a>'
        preset = f" · <code>{html.escape(row.preset)}</code>" if row.get("preset", "–") != "–" else ""
        out.append(f"<tr><td>{row.claim} · {html.escape(row.test)}<br><small>{html.escape(row.scale)}{preset} ({link})</small></td>"
                   f'<td>{html.escape(str(row["ours / paper"]))}</td><td>{html.escape(str(row.seeds))}</td>'
                   f"<td>{html.escape(str(row.images))}</td><td>{html.escape(row.why)}</td>"
                   f"<td>{html.escape(row.method)}</td></tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def folded(title, body_html, open=False):
    """HTML of a collapsed block around ``body_html`` (a table's ``to_html()``, say): sphinx-design's
    dropdown markup, so that in the book it looks like a ``{dropdown}`` directive, and a plain
    ``<details>`` in Jupyter, where it folds as well. For a result notebook's secondary tables, which a
    code cell cannot put inside a directive."""
    return (f'<details class="sd-sphinx-override sd-dropdown sd-card sd-mb-3 lcnn-fold"{" open" if open else ""}>'
            f'<summary class="sd-summary-title sd-card-header"><span class="sd-summary-text">{html.escape(title)}</span>'
            f'<span class="sd-summary-state-marker sd-summary-chevron-right">▸</span></summary>'
            f'<div class="sd-summary-content sd-card-body docutils">{body_html}</div></details>')


__all__ = ["ledger_forest", "ledger_table", "ordered", "ledger_details", "verdict_badge", "folded", "VERDICT_COLOURS"]
