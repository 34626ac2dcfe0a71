"""The repository's promises about itself: the Pages workflow runs exactly the README's
commands, and the version in the book's footer is the package's."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def readme_command(heading):
    text = (ROOT / "README.md").read_text()
    block = text[text.index(heading):]
    return re.search(r"```bash\n(.+?)\n", block).group(1)


def test_workflow_runs_the_readme_test_command_and_builds_with_warnings_as_errors():
    wf = yaml.safe_load((ROOT / ".github/workflows/book.yml").read_text())
    runs = [s["run"] for s in wf["jobs"]["build"]["steps"] if "run" in s]
    assert readme_command("Run the tests") in runs
    assert any("jupyter-book build book/ --all -W -n --keep-going" in r for r in runs)
    assert wf["jobs"]["deploy"]["needs"] == "build"


def test_ci_and_the_workflow_check_the_built_book_in_a_browser_after_building_it():
    """tests/test_browser.py needs a built book and must not skip in CI: both run the README's browser
    command (with LCNN_REQUIRE_BROWSER=1) after the build, and CI installs Debian's chromium first."""
    browser = readme_command("Check the built book in a browser")
    assert "LCNN_REQUIRE_BROWSER=1" in browser and "pytest tests/test_browser.py" in browser
    build = "jupyter-book build book/ --all -W -n --keep-going"
    wf = yaml.safe_load((ROOT / ".github/workflows/book.yml").read_text())
    runs = [s["run"] for s in wf["jobs"]["build"]["steps"] if "run" in s]
    assert browser in runs
    assert next(i for i, r in enumerate(runs) if build in r) < runs.index(browser)
    ci = (ROOT / ".ci/run").read_text()
    assert "/^Check the built book in a browser/" in ci and 'bash -c "$browser"' in ci
    assert ci.index(build) < ci.index("apt-get install -y -qq chromium") < ci.index('bash -c "$browser"')
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(d.startswith("playwright") for d in extras["test"])
    assert any(d.startswith("sphinx-mathjax-offline") for d in extras["book"])


def test_book_footer_shows_the_package_version():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert f"version {version}" in config["html"]["extra_footer"]
    assert f"## {version}" in (ROOT / "CHANGELOG.md").read_text()


# Preinstalled on Kaggle and Colab images; the train notebook installs with --no-deps to keep their torch.
HOSTED_PREINSTALLED = {"torch", "numpy", "scipy", "pandas", "pyyaml", "tqdm", "pillow"}


def test_train_notebook_installs_every_dependency_hosted_platforms_lack():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!\[; ]", d, maxsplit=1)[0].lower() for d in deps}
    source = (ROOT / "notebooks" / "train.md").read_text()
    line = next(l for l in source.splitlines() if '"pip", "install"' in l)
    block = source[source.index(line):source.index("check=True", source.index(line))]
    missing = {n for n in names - HOSTED_PREINSTALLED if f'"{n}' not in block}
    assert not missing, f"train.md's pip install lacks {missing}"
