# All set-up is here, so that the README's two commands work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run examples test install generate docs clean

$(STAMP): pyproject.toml
	@# The page tests drive Debian's Chromium with Playwright (its own browser download is not reachable here).
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The main job: the registry on SQLite (var/registry), seeded with the example feeds.
run: $(STAMP)
	$(BIN)/sqm serve --data var/registry --seed

# Validate every example feed.
examples: $(STAMP)
	$(BIN)/sqm validate examples/feeds examples/csv

# The whole test suite, including mypy, ruff, the artifact freshness check and mkdocs --strict.
test: $(STAMP)
	$(BIN)/python -m pytest

generate: $(STAMP)
	$(BIN)/sqm schema generate

docs: $(STAMP)
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) site .pytest_cache .mypy_cache .ruff_cache
