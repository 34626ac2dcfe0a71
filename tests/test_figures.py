"""The summary page's forest plot and compact ledger (lcnn_core.figures) are drawn from the ledger's
numbers, one row per ledger row, and the table keeps five columns however many rows the ledger has."""
import math
import re

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from lcnn_core import figures, report, verdicts  # noqa: E402


def synthetic_ledger():
    """Three rows through the real verdict rule: a reproduced ratio, a one-seed ratio (no interval)
    and an equivalence on accuracy, shaped like report.ledger()'s rows."""
    rows = [
        (1, "E C_f, LCNN / Standard", "scale A", verdicts.compare([1.0, 1.1, 0.9], [4.0, 4.2, 3.9], paper=0.26, scale="ratio")),
        (1, "E C_f, LCNN / Standard", "scale B", verdicts.compare([1.0], [4.0], paper=0.26, scale="ratio")),
        (1, "accuracy, LCNN − Standard (points)", "scale A", verdicts.equivalent([90.1, 90.3, 89.9], [90.0, 90.2, 90.1], paper=-0.1)),
    ]
    return pd.DataFrame([report._ledger_row(c, t, s, v, "geometry") for c, t, s, v in rows])


def drawn_rows(fig):
    """(panel, estimate) of every marked estimate: the 'o' markers of the figure's axes."""
    out = []
    for i, ax in enumerate(fig.axes):
        for line in ax.lines:
            if line.get_marker() == "o" and len(line.get_xdata()) == 1:
                out.append((i, float(line.get_xdata()[0])))
    return out


def test_every_verdict_has_a_colour_and_a_mark():
    assert set(figures.VERDICT_COLOURS) == set(verdicts.OUTCOMES) == set(figures.VERDICT_MARKS)
    assert len(set(figures.VERDICT_COLOURS.values())) == len(verdicts.OUTCOMES)


def test_forest_plot_draws_each_row_at_its_estimate_with_ratios_on_a_log_axis():
    ledger = synthetic_ledger()
    fig = figures.ledger_forest(ledger)
    ratio, diff = fig.axes[:2]
    assert ratio.get_xscale() == "log" and diff.get_xscale() == "linear"
    drawn = drawn_rows(fig)
    assert sorted(drawn) == sorted([(0, ledger.estimate[0]), (0, ledger.estimate[1]), (1, ledger.estimate[2])])
    # the one-seed row has no interval: a hollow marker and no interval line
    hollow = [l for l in ratio.lines if l.get_marker() == "o" and l.get_markerfacecolor() == "white"]
    assert len(hollow) == 1 and math.isnan(ledger.low[1])
    # no-effect lines at ratio 1 and difference 0; the paper's value marked on every row
    assert any(l.get_linestyle() == "--" and l.get_xdata()[0] == 1.0 for l in ratio.lines)
    assert any(l.get_linestyle() == "--" and l.get_xdata()[0] == 0.0 for l in diff.lines)
    ticks = [float(l.get_xdata()[0]) for ax in fig.axes for l in ax.lines if l.get_marker() == "|"]
    assert sorted(ticks) == sorted(ledger.paper_value)
    # each row's verdict written beside it, in its colour
    labels = [t for ax in fig.axes for t in ax.texts if t.get_text().endswith(tuple(verdicts.OUTCOMES))]
    assert [t.get_text().split(" ", 1)[1] for t in labels] == list(ledger.verdict)
    assert all(matplotlib.colors.to_hex(t.get_color()) == figures.VERDICT_COLOURS[t.get_text().split(" ", 1)[1]].lower()
               for t in labels)


def test_forest_plot_of_the_committed_ledger_has_one_marker_per_row_and_grows_with_it():
    ledger = report.ledger()
    fig = figures.ledger_forest(ledger)
    assert len(drawn_rows(fig)) == int(np.isfinite(ledger.estimate).sum()) == len(ledger)
    bigger = pd.concat([ledger, synthetic_ledger()], ignore_index=True)
    taller = figures.ledger_forest(bigger)
    assert len(drawn_rows(taller)) == len(bigger)
    assert taller.get_figheight() > fig.get_figheight()


def test_ledger_rows_carry_the_verdicts_numbers_unformatted():
    ledger = report.ledger()
    assert set(ledger.effect) <= {"ratio", "difference"}
    finite = ledger[np.isfinite(ledger.low)]
    assert (finite.low <= finite.estimate + 1e-12).all() and (finite.estimate <= finite.high + 1e-12).all()
    assert (ledger[ledger.effect == "ratio"].estimate > 0).all()
    row = ledger.iloc[0]
    assert row["ours (95% CI)"] == f"{row.estimate:.2f} [{row.low:.2f}, {row.high:.2f}]"


@pytest.mark.parametrize("source", ["synthetic", "committed"])
def test_compact_table_has_five_columns_one_row_per_ledger_row_and_a_heading_per_claim(source):
    ledger = synthetic_ledger() if source == "synthetic" else report.ledger()
    table = figures.ledger_table(ledger, report.CLAIMS)
    body = table.split("<tbody>")[1]
    rows = re.findall(r"<tr(?: class=\"[^\"]*\")?>(.*?)</tr>", body)
    headings = [r for r in rows if "colspan" in r]
    assert len(headings) == ledger.claim.nunique() and len(rows) - len(headings) == len(ledger)
    assert re.findall(r"<th>(.*?)</th>", table.split("<tbody>")[0]) == ["test", "scale", "ours [95% CI]", "paper", "verdict"]
    # a test is named once (rowspan over its scales); every row has its interval and verdict
    assert sum(len(re.findall(r'rowspan="(\d+)"', r)) for r in rows) == ledger.groupby(["claim", "test"]).ngroups
    assert sum(int(n) for n in re.findall(r'rowspan="(\d+)"', body)) == len(ledger)
    for interval in ledger["ours (95% CI)"]:
        assert interval in table
    assert table.count("lcnn-verdict ") == len(ledger)


def test_details_link_every_row_to_its_page_and_folded_blocks_fold():
    ledger = synthetic_ledger()
    details = figures.ledger_details(ledger)
    assert details.count('href="geometry.html"') == len(ledger)
    for why in ledger.why:
        assert why.replace("'", "&#x27;") in details
    block = figures.folded("More <tables>", "<table></table>")
    assert block.startswith("<details") and "open" not in block.split(">")[0] and "More &lt;tables&gt;" in block
