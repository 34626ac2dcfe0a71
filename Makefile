# Inside an environment made by the README's commands.
.PHONY: book test main
main:
	python -m lcnn_core train --preset cpu-default
book:
	jupyter-book build book/ --all -W -n --keep-going
test:
	pytest tests notebooks --nbval-lax --ignore=notebooks/train.ipynb
