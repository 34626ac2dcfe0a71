# Inside an environment made by the README's commands.
.PHONY: book test main
main:
	python -m lcnn_core train --preset cpu-default --run standard-s0 --run lcnn-s0 --run gradreg-s0 --run lcnn_gradreg-s0 --set eval_apgd_samples=null
book:
	jupyter-book build book/ --all -W -n --keep-going
test:
	pytest tests notebooks --nbval-lax --ignore=notebooks/train.ipynb
