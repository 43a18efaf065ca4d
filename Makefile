.PHONY: install test lint typecheck fmt demo check

install:
	python -m pip install -e '.[test]'

test:
	python -m pip install -q -e '.[test]' && python -m pytest -q

lint:
	ruff check .
	ruff format --check .

typecheck:
	mypy

fmt:
	ruff format .
	ruff check --fix .

check: lint typecheck test

demo:
	python -m pip install -q -e . && fraudstream demo
