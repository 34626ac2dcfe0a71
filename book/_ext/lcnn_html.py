"""One copy of each script on every page (a Sphinx extension local to the book, _config.yml's
``local_extensions``).

sphinx-thebe 0.3 registers its inline configuration (``const THEBE_JS_URL = ...``) at
``env-before-read-docs``, and with jupyter-book 1 / Sphinx 7.4 it lands on every page twice, at two
priorities (one with a None attribute that the page does not show): the second ``const`` is a SyntaxError in every reader's console
(tests/test_browser.py found it). Drop every script whose source and attributes repeat an earlier
one's; the first keeps its place.
"""


def _one_of_each(app, pagename, templatename, context, doctree):
    seen, kept = set(), []
    for script in context.get("script_files", []):
        # what the page renders: the source and the attributes that are not None (Sphinx's js_tag)
        attributes = {k: v for k, v in getattr(script, "attributes", {}).items() if v is not None}
        key = (str(getattr(script, "filename", script) or ""), tuple(sorted(attributes.items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    context["script_files"] = kept


def setup(app):
    app.connect("html-page-context", _one_of_each, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
