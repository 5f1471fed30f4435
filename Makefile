# Two commands on a fresh machine: `make run` and `make test`. Everything else is set up from here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium

.PHONY: run test demo bench system-packages clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# The tests run the real topology: Debian's Chromium (Playwright never downloads a browser of its own), nginx in
# front of the app, and a PostgreSQL server. Each is installed from Debian when missing; the tests start private
# instances on loopback high ports and stop them.
DEBIAN_PACKAGES := chromium:$(CHROMIUM) nginx-light:/usr/sbin/nginx postgresql:/usr/lib/postgresql/15/bin/postgres

system-packages:
	@missing=""; for item in $(DEBIAN_PACKAGES); do \
		[ -e "$${item#*:}" ] || missing="$$missing $${item%%:*}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages for the tests:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

run: $(INSTALLED)
	$(BIN)/flask --app app serve

demo: $(INSTALLED)
	$(BIN)/flask --app app demo

# Speed is measured, not asserted: issue 11's table as ratios measured side by side on data the bench seeds itself
# (a few minutes; `make bench BENCH_ARGS=--quick` for a tiny run, `BENCH_ARGS=--help` for the sizes).
BENCH_ARGS ?=
bench: $(INSTALLED)
	$(BIN)/python benchmarks/bench_pages.py $(BENCH_ARGS)

# One worker per core, each test file on one worker (its module fixtures, servers and browsers stay together).
test: $(INSTALLED) system-packages
	$(BIN)/python -m pytest -n auto --dist loadfile

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
