# Two commands matter: `make demo` and `make test`. Both create the virtualenv on first use.
# The demo's state is the checkout's one state folder, var/ (settings.VAR_DIR's default), so
# every manage.py command run afterwards sees it; `make demo` starts it over.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 8000
# What `make demo` replaces: the database, the sandbox's books, the logs and the mail folder
# (var/demo/ is where older checkouts kept them). Other things under var/ (benches) stay.
DEMO_STATE := var/db.sqlite3* var/sandbox.sqlite3* var/*.log var/mail var/demo

.PHONY: demo test lint format serve clean venv screenshots

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO_STATE)
	$(BIN)/python manage.py demo $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The pictures the docs show, taken by the browser tests (tests/browser) in Debian's chromium:
# every step is saved under var/screenshots/; those a doc names are copied to docs/screenshots/.
screenshots: $(STAMP)
	SCREENSHOTS_DIR=var/screenshots $(BIN)/python -m pytest tests/browser -q $(PYTEST_ARGS)
	grep -ho 'screenshots/[A-Za-z0-9_-]*\.png' docs/*.md | sort -u | \
	  while read -r png; do cp "var/$$png" "docs/$$png"; done

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

serve: $(STAMP)
	$(BIN)/python manage.py serve_demo --web 127.0.0.1:$(PORT)

clean:
	rm -rf $(VENV) var
