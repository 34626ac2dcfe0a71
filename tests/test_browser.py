"""The built book as a reader sees it: every page of ``_build/html`` opened in headless Chromium
at 1400 × 900 (Playwright driving the system's ``chromium``; Playwright's own browser download is
not needed), offline: every request that leaves the machine is blocked.

What it checks, on every page: no JavaScript error from the book's own scripts; every formula
rendered by the MathJax that ships with the book; no table wider than the text column unless it
sits in a block marked ``lcnn-scroll`` (deliberately scrollable, ``book/_static/lcnn.css``). On the
summary page: the ledger's forest plot comes first, on the first screen, followed by a ledger
table that fits. It writes ``_build/browser/pages.json`` (every page's height and tables) and
screenshots of the summary page, ``_build/browser/summary.png`` (the first screen) and
``summary-full.png``, for review.

It needs a built book (``jupyter-book build book/ --all -W -n --keep-going``): the README's test
command runs before the build, so there it skips; ``.ci/run`` and the workflow run it again after
the build with ``LCNN_REQUIRE_BROWSER=1``, which turns every skip (no browser, no Playwright, no
built book) into a failure. ``LCNN_BOOK_HTML`` points it at another built book, ``LCNN_CHROMIUM``
at another browser.
"""
import json
import os
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HTML = Path(os.environ.get("LCNN_BOOK_HTML") or ROOT / "_build" / "html").resolve()
OUT = HTML.parent / "browser"
REQUIRED = os.environ.get("LCNN_REQUIRE_BROWSER") == "1"
WIDTH, HEIGHT = 1400, 900
SCROLL_CLASS = "lcnn-scroll"
FIGURE_ID = "fig-ledger-forest"  # the forest plot's name on book/summary.md
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# A page is measured once it is ready as a reader sees it: loaded, every formula typeset (MathJax's
# startup promise), the web fonts in (they set the widths measured) and every image loaded or
# failed (a blocked badge counts as done). Not Playwright's "networkidle" (500 ms without a
# request), which its docs discourage for tests: it timed out at 30 s in CI (stop 39; the page
# was not named) and passes here, so it waits on timing, not on anything the page shows. The
# generous timeout is for a loaded machine; a page that never gets ready still fails, named.
TIMEOUT_MS = 120_000
READY = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  await document.fonts.ready;
}"""

# Page height as the reader first sees it (dropdowns closed), then every table with every dropdown
# opened and every tab shown, measured against the text column's content width.
MEASURE = """() => {
  const col = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const height = document.documentElement.scrollHeight;
  for (const d of document.querySelectorAll('details')) d.open = true;
  const style = document.createElement('style');
  style.textContent = '.sd-tab-set > .sd-tab-content { display: block !important; }';
  document.head.appendChild(style);
  const cs = getComputedStyle(col);
  const column = col.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
  const heading = (t) => {
    let best = '';
    for (const h of col.querySelectorAll('h1, h2, h3, h4')) {
      if (h.compareDocumentPosition(t) & Node.DOCUMENT_POSITION_FOLLOWING) best = h.textContent.replace('#', '').trim();
    }
    return best;
  };
  const tables = [...col.querySelectorAll('table')].map((t) => ({
    width: Math.ceil(Math.max(t.scrollWidth, t.getBoundingClientRect().width)),
    height: Math.round(t.getBoundingClientRect().height),
    rows: t.rows.length,
    columns: Math.max(0, ...[...t.rows].map((r) => [...r.cells].reduce((n, c) => n + c.colSpan, 0))),
    marked: t.closest('.__SCROLL__') !== null,
    section: heading(t),
  }));
  const math = [...col.querySelectorAll('.math')];
  return {height, column: Math.floor(column), tables,
          math: math.length, math_rendered: math.filter((m) => m.querySelector('mjx-container')).length};
}""".replace("__SCROLL__", SCROLL_CLASS)


def unavailable(reason):
    if REQUIRED:
        pytest.fail(f"{reason} (LCNN_REQUIRE_BROWSER=1: CI must run the browser test, not skip it)")
    pytest.skip(reason)


def chromium_path():
    for name in (os.environ.get("LCNN_CHROMIUM"), "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if name and (path := shutil.which(name)):
            return path
    return None


def built_pages():
    return sorted(p.name for p in HTML.glob("*.html"))


@pytest.fixture(scope="module")
def book():
    """{page: measurement} for every built page, with the summary page's figure and screenshots."""
    if not (HTML / "summary.html").is_file():
        unavailable(f"no built book at {HTML}: run `jupyter-book build book/ --all -W -n --keep-going` first")
    try:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (it is in the test extra: pip install -e '.[test]')")
    OUT.mkdir(parents=True, exist_ok=True)
    pages = {}
    with sync_playwright() as p:
        browser_path = chromium_path()
        if browser_path is None and not Path(p.chromium.executable_path).is_file():  # nor Playwright's own download
            unavailable("no Chromium found (chromium, chromium-browser, google-chrome, $LCNN_CHROMIUM or Playwright's "
                        "own); on Debian: apt-get install -y chromium")
        browser = p.chromium.launch(executable_path=browser_path, args=ARGS)
        context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
        context.set_default_timeout(TIMEOUT_MS)
        blocked = []

        def offline(route):
            url = route.request.url
            if url.startswith(("file:", "data:", "blob:")):
                route.continue_()
            else:
                blocked.append(url)
                route.abort()

        context.route("**/*", offline)
        for name in built_pages():
            page = context.new_page()
            errors, console = [], []
            page.on("pageerror", lambda e, errors=errors: errors.append(f"{e.name}: {e.message}"))
            page.on("console", lambda m, console=console: console.append(m.text) if m.type == "error" else None)
            n_blocked = len(blocked)
            if 'http-equiv="Refresh"' in (HTML / name).read_text():  # index.html: a redirect to the first page
                page.goto((HTML / name).as_uri())
                page.wait_for_url("**/summary.html")
                pages[name] = {"url": page.url.rsplit("/", 1)[-1], "page_errors": errors, "console_errors": [], "blocked": []}
                page.close()
                continue
            try:
                page.goto((HTML / name).as_uri(), wait_until="load")
                page.evaluate(READY)
                page.wait_for_function("() => [...document.images].every((img) => img.complete)")
            except PlaywrightTimeout as e:
                pytest.fail(f"{name} was not ready within {TIMEOUT_MS // 1000} s: {e}".splitlines()[0])
            info = {"url": page.url.rsplit("/", 1)[-1]}
            if name == "summary.html":
                page.screenshot(path=str(OUT / "summary.png"))
                page.screenshot(path=str(OUT / "summary-full.png"), full_page=True)
                info["figure"] = page.evaluate("""(id) => {
                  const fig = document.getElementById(id);
                  const img = fig && fig.querySelector('img');
                  if (!img) return null;
                  const r = img.getBoundingClientRect();
                  const first = document.querySelector('article.bd-article table');
                  return {top: r.top + window.scrollY, width: r.width, height: r.height,
                          natural: img.naturalWidth, table_top: first ? first.getBoundingClientRect().top + window.scrollY : null};
                }""", FIGURE_ID)
            info |= page.evaluate(MEASURE)
            # a request blocked because we are offline is not an error of the book's own scripts
            info["console_errors"] = [c for c in console if "net::ERR_" not in c and "Failed to load resource" not in c]
            info["page_errors"] = errors
            info["blocked"] = sorted(set(blocked[n_blocked:]))
            pages[name] = info
            page.close()
        browser.close()
    report = {"viewport": [WIDTH, HEIGHT], "book": str(HTML), "pages": pages}
    (OUT / "pages.json").write_text(json.dumps(report, indent=1))
    return pages


def wide_tables(info):
    return [t for t in info.get("tables", []) if t["width"] > info["column"] + 1]


def test_every_built_page_loads_offline_without_errors_from_the_books_scripts(book):
    assert {"summary.html", "intro.html", "geometry.html", "reproducing.html"} <= set(book)
    bad = {name: info["page_errors"] + info["console_errors"] for name, info in book.items()
           if info["page_errors"] or info["console_errors"]}
    assert not bad, f"JavaScript errors: {bad}"


def test_no_table_is_wider_than_its_column_unless_marked_scrollable(book):
    measured = [info for info in book.values() if "column" in info]
    assert measured and all(info["column"] > 500 for info in measured)  # the text column at 1400 px, not a phone's
    over = {name: [f"{t['columns']} columns, {t['rows']} rows, {t['width']} px in {info['column']} px ({t['section']})"
                   for t in wide_tables(info) if not t["marked"]]
            for name, info in book.items()}
    over = {k: v for k, v in over.items() if v}
    assert not over, f"tables wider than the text column: {over}"


def test_every_formula_renders_with_the_mathjax_shipped_with_the_book(book):
    """Offline, a CDN MathJax would leave every formula as raw LaTeX."""
    assert book["theory.html"]["math"] > 10
    raw = {name: f"{info['math'] - info['math_rendered']} of {info['math']}" for name, info in book.items()
           if info.get("math", 0) > info.get("math_rendered", 0)}
    assert not raw, f"formulas left as raw LaTeX: {raw}"
    assert not any("mathjax" in url.lower() for info in book.values() for url in info["blocked"])


def test_summary_opens_with_the_ledger_figure_followed_by_a_ledger_table_that_fits(book):
    info = book["summary.html"]
    fig = info["figure"]
    assert fig is not None, f"no image in #{FIGURE_ID} on summary.html"
    assert fig["natural"] > 0 and fig["width"] > 0.8 * info["column"] and fig["height"] > 300
    assert fig["top"] < HEIGHT, "the forest plot does not start on the first screen"
    assert fig["table_top"] is not None and fig["top"] < fig["table_top"]
    ledger = info["tables"][0]
    assert ledger["section"] == "The claims ledger" and ledger["columns"] <= 7
    assert ledger["width"] <= info["column"] + 1 and not ledger["marked"]
    assert (OUT / "summary.png").stat().st_size > 10_000 and (OUT / "summary-full.png").stat().st_size > 10_000


def test_every_colab_and_kaggle_link_opens_a_notebook():
    """Launch links must open a committed .ipynb under notebooks/: Colab cannot open a page's .md, and
    book/*.ipynb are symlinks, which GitHub serves as their target's name (why _config.yml has no
    launch buttons)."""
    if not (HTML / "summary.html").is_file():
        unavailable(f"no built book at {HTML}")
    links = {(page.name, href) for page in HTML.glob("*.html")
             for href in re.findall(r'href="(https://(?:colab\.research\.google\.com|kaggle\.com)/[^"]*)"', page.read_text())}
    assert links, "no Colab or Kaggle link in the built book"
    bad = sorted((page, href) for page, href in links if not re.search(r"/blob/main/notebooks/\w+\.ipynb$", href))
    assert not bad, f"launch links that cannot open a notebook: {bad[:5]}"
