"""Every number typed into a page's prose is glued, or has a named source.

Prose = book/*.md and the markdown cells of notebooks/*.md (the jupytext twins), with math, code,
glue and other roles, links and HTML removed. A number left over must be one of:

- a value of ``lcnn_core/reference.py`` (the paper's, the team's, Yao et al.'s numbers, the
  verdict tolerances), as written there or rounded;
- a value of a preset (``lcnn_core/presets/*.yaml``: settings such as epochs, widths, lambda) or
  a default of ``lcnn_core.metrics`` (noise magnitudes, iterations, tolerances);
- a small count or label (an integer up to 10: "two seeds" written as digits, section numbers,
  list items) or the year of a cited work;
- on ``ALLOWED`` below, with its source.

The test fails on anything else: a result typed into prose instead of glued.
"""
import re
from pathlib import Path

import jupytext
import pytest
import yaml

from lcnn_core import config, metrics, reference, verdicts

ROOT = Path(__file__).resolve().parent.parent

# number as written -> where it comes from. Keep it short; prefer glue.
ALLOWED = {
    "50,000": "CIFAR-10 training set size (data.py)",
    "10,000": "CIFAR-10 test set size (data.py)",
    "0.18": "parameters (M) of the width-8 ResNet-18 (models.py; tests/test_models.py)",
    "1.2–2.2": "LCNN − Standard PGD gain over eps, reference.PAPER_PGD",
    "37.6": "reference.PAPER_PGD standard at eps 0.1, rounded",
    "15": "PAPER_CIFAR10_CF read off a plot to within 15 % (reference.py docstring)",
    "4096": "Yao et al. / PyHessian: samples needed on CIFAR-10 (their paper)",
    "28": "MNIST image size (28 x 28)",
    "87.5": "lr milestones at 75 % and 87.5 % of training (presets: milestones 0.75, 0.875)",
    "17": "centered-softplus modules in a ResNet-18 (STUDY.md §1; tests/test_models.py)",
    "250": "beta / 4, the softplus curvature bound at beta = 1000 (theory.md derives it)",
    "20–35": "spectral_norm's under-estimate on random 3x3 kernels, from STUDY.md §1 (not in results/)",
    "1.25–1.5": "the slope that under-estimate gives, 1 / (1 − 0.20 ... 0.35), derived in theory.md",
    "2.5": "PGD step size 2.5 eps / steps (attacks.py, pgd.json settings)",
    "3.11": "requires-python >= 3.11 (pyproject.toml)",
    "7.5": "a T4's CUDA compute capability (NVIDIA's specification; bf16 needs 8.0)",
}


def _reference_values():
    vals = set()

    def walk(x):
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)
        elif isinstance(x, (int, float)) and not isinstance(x, bool):
            vals.add(float(x))

    for name in dir(reference):
        if name.isupper():
            walk(getattr(reference, name))
    for name in ("ROBUSTNESS_MAGNITUDES", "DEFAULT_ITERS", "DEFAULT_TOL", "CURVATURE_EPS"):
        walk(getattr(metrics, name))
    walk([verdicts.LEVEL, 100 * verdicts.LEVEL, verdicts.FAR_SMALLER])
    walk(config.DEFAULTS)
    # (study presets, e.g. yao.yaml, are among the presets above: batch sizes, Hessian subset, learning rate)
    for f in (ROOT / "lcnn_core" / "presets").glob("*.yaml"):
        walk(yaml.safe_load(f.read_text()))
    return vals


KNOWN = _reference_values()
STRIP = [
    (r"```.*?```", re.S), (r"\$\$.*?\$\$", re.S), (r"\$[^$\n]+\$", 0), (r"`[^`\n]*`", 0),
    (r"\{[a-z:\-]+\}", 0),  # role names such as {glue:text}, {doc} (their argument went with the `code`)
    (r"\]\([^)]*\)", 0), (r"<[^>]+>", 0), (r"https?://\S+", 0), (r"^\(sec-[^)]*\)=$", re.M),
    (r"^---\n.*?\n---\n", re.S),  # front matter
]
NUMBER = re.compile(r"(?<![\w.\-/§])[+−-]?\d(?:[\d,]*\d)?(?:\.\d+)?(?:e[-−]?\d+)?(?:\s?[–-]\s?\d[\d,]*(?:\.\d+)?)?(?![\w])")


def prose(path):
    """The prose of a page: a book chapter's text, or a notebook's markdown cells."""
    if path.parent.name == "notebooks":
        text = "\n\n".join(c.source for c in jupytext.read(path).cells if c.cell_type == "markdown")
    else:
        text = path.read_text()
        text = re.sub(r"```\{code-cell\}.*?```", "", text, flags=re.S)
    for pattern, flags in STRIP:
        text = re.sub(pattern, " ", text, flags=flags)
    return text


def _value(token):
    t = token.replace("−", "-").replace(",", "").lstrip("+")
    try:
        return float(t)
    except ValueError:
        return None


def explained(token):
    if token in ALLOWED or token.lstrip("+−-") in ALLOWED:
        return True
    if re.fullmatch(r"[+−-]?\d[\d,.]*\s?[–-]\s?\d[\d,.]*", token):  # a range: both ends must be explained
        a, b = re.split(r"\s?[–-]\s?", token.lstrip("+−-"), maxsplit=1)
        return explained(a) and explained(b)
    v = _value(token)
    if v is None:
        return False
    if v.is_integer() and (abs(v) <= 10 or 1950 <= v <= 2030):
        return True
    decimals = len(token.split(".")[1]) if "." in token else 0
    return any(abs(round(k, decimals) - abs(v)) < 1e-9 or abs(k - abs(v)) <= 1e-12 * max(1, abs(k)) for k in KNOWN)


PAGES = sorted((ROOT / "book").glob("*.md")) + sorted((ROOT / "notebooks").glob("*.md"))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_typed_number_is_glued_or_sourced(page):
    bad = sorted({m.group(0) for m in NUMBER.finditer(prose(page)) if not explained(m.group(0))})
    assert not bad, (f"{page.relative_to(ROOT)}: numbers typed into prose with no source: {bad}. Glue them from "
                     "results/, take them from reference.py or a preset, or add them to ALLOWED with their source.")


def test_the_allow_list_is_small():
    assert len(ALLOWED) <= 25


def test_the_checker_catches_a_typed_result(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("LCNN reaches 97.63 % and {glue:text}`geometry.ipynb::x:.1f` %, in $3.7$ s; ResNet-18, 1e-3.\n")
    found = {m.group(0) for m in NUMBER.finditer(prose(page))}
    assert found == {"97.63", "1e-3"}
    assert not explained("97.63") and explained("1e-3") and explained("270.89") and explained("77.4")
