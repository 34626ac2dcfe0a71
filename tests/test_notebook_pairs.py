"""Every notebook is its own source, kept as a jupytext pair: notebooks/x.ipynb (what papermill,
nbval, Colab and the book run) and notebooks/x.md (MyST markdown, what diffs and reviews read).
Either side may be edited; `jupytext --sync notebooks/x.ipynb` brings the other up to date.
This test fails when a pair has drifted apart (see CONTRIBUTING.md)."""
from pathlib import Path

import jupytext
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PAIRED = sorted(NOTEBOOKS.glob("*.ipynb"))


def cells(nb):
    """What a pair must agree on: each cell's type, source and metadata (tags: parameters,
    hide-input, remove-input). Cell ids and outputs live only in the .ipynb."""
    return [(c.cell_type, c.source, dict(c.metadata)) for c in nb.cells]


def test_every_notebook_has_a_text_twin_and_every_twin_a_notebook():
    assert PAIRED, "no notebooks found"
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.md")) == [p.stem for p in PAIRED]


@pytest.mark.parametrize("ipynb", PAIRED, ids=lambda p: p.stem)
def test_pair_in_sync(ipynb):
    nb = jupytext.read(ipynb)
    text = jupytext.read(ipynb.with_suffix(".md"))
    assert nb.metadata["jupytext"]["formats"] == "ipynb,md:myst"
    assert text.metadata["jupytext"]["formats"] == "ipynb,md:myst"
    assert cells(text) == cells(nb), (
        f"{ipynb.name} and {ipynb.with_suffix('.md').name} differ: run `jupytext --sync {ipynb.relative_to(NOTEBOOKS.parent)}`")


@pytest.mark.parametrize("ipynb", PAIRED, ids=lambda p: p.stem)
def test_no_control_characters_in_cells(ipynb):
    """A backslash eaten as an escape (\\b -> backspace, \\t -> TAB before 'frac') broke an equation once."""
    for c in jupytext.read(ipynb).cells:
        bad = [ch for ch in c.source if ord(ch) < 32 and ch != "\n"]
        assert not bad, f"{ipynb.name}: control character {bad[0]!r} in a {c.cell_type} cell: {c.source[:60]!r}"


@pytest.mark.parametrize("ipynb", PAIRED, ids=lambda p: p.stem)
def test_committed_without_outputs(ipynb):
    """The book re-executes every page (execute_notebooks: force) and nbval runs them on the committed
    results, so stored outputs would only be stale copies (and noise in the .ipynb diffs)."""
    for c in jupytext.read(ipynb).cells:
        assert c.cell_type != "code" or (not c.outputs and c.execution_count is None), f"{ipynb.name}: clear its outputs"
