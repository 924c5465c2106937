# faas-portal: `make run` starts everything, `make test` runs the whole suite.
# Both do the whole set-up first (virtualenv, Python and JavaScript dependencies, bundles).

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# Only to load settings for commands that never connect (lint, collectstatic).
OFFLINE_ENV := PORTAL_SECRET_KEY=offline DATABASE_URL=postgres://offline/none REDIS_URL=redis://offline:1/0
# The interpreters functions run with, each with Fission's image packages (target runtimes).
RUNTIMES := .build/runtimes
RUNTIME_REQUIREMENTS := runtime/images/python/requirements.txt
RUNTIME_PYTHONS := 3.11 3.12 3.13
PYENV_ROOT ?= $(HOME)/.pyenv
# The router's compiled front and where llhttp's sources are unpacked (see `make fastpath`); set
# here, before `setup` names it.
FASTPATH := runtime/fastpath/_front.so
LLHTTP := .build/llhttp

# The workers' compiled header collector (runtime/worker/_fields.c), one per runtime interpreter.
WORKEREXT := $(RUNTIMES)/.workerext

.PHONY: setup run test lint bench format reset chromium wrk prometheus sandbox runtimes checkov bench-ref fastpath \
	workerext

setup: $(VENV)/.installed $(RUNTIMES)/.installed node_modules/.installed static/dist/main.js \
	.build/staticfiles/staticfiles.json $(FASTPATH) $(WORKEREXT)

# Then the `faas` command-line client (cli/) as .venv/bin/faas, editable: the lock holds its
# dependencies and its build's (wheel), so nothing more is fetched.
$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

# What functions run with (runtime/interpreters.py): one virtualenv per interpreter found, holding
# Fission's Python image packages (wheels only, no system site-packages), never the portal's .venv.
# An interpreter is the first python<X.Y> that starts, from PATH (a pyenv shim may refuse) then
# from pyenv's versions; absent ones are skipped, none at all fails. A virtualenv counts once its
# own .installed exists (the runtime ignores a half-built one). After installing an interpreter:
# `rm .build/runtimes/.installed && make runtimes`.
runtimes: $(RUNTIMES)/.installed

$(RUNTIMES)/.installed: $(RUNTIME_REQUIREMENTS)
	@built=; for version in $(RUNTIME_PYTHONS); do \
		python=; for candidate in $$(which -a python$$version) $(PYENV_ROOT)/versions/$$version.*/bin/python$$version; do \
			if [ -x "$$candidate" ] && [ "$$("$$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$$version" ]; \
			then python=$$candidate; break; fi; \
		done; \
		if [ -z "$$python" ]; then echo "runtimes: no python$$version on this machine, skipped"; continue; fi; \
		venv=$(RUNTIMES)/python$$version; echo "runtimes: $$venv from $$python"; \
		rm -rf $$venv && "$$python" -m venv $$venv && \
		$$venv/bin/python -m pip install --quiet --disable-pip-version-check --only-binary :all: \
			-r $(RUNTIME_REQUIREMENTS) && touch $$venv/.installed || exit 1; \
		built="$$built $$version"; \
	done; \
	if [ -z "$$built" ]; then \
		echo "runtimes: none of Python $(RUNTIME_PYTHONS) is installed (looked in PATH and $(PYENV_ROOT)/versions)" >&2; \
		exit 1; \
	fi
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

static/dist/main.js: node_modules/.installed $(wildcard static/src/*)
	npm run --silent build

.build/staticfiles/staticfiles.json: $(VENV)/.installed static/dist/main.js $(shell find static/src templates -type f 2>/dev/null)
	$(OFFLINE_ENV) $(PY) manage.py collectstatic --noinput --verbosity 0

# What the local runtime sandboxes functions and builds with (runtime/sandbox): bubblewrap,
# slirp4netns for egress, util-linux's setpriv and nsenter, iproute2's ip.
SANDBOX_TOOLS := bwrap slirp4netns setpriv nsenter ip
sandbox:
	@for tool in $(SANDBOX_TOOLS); do command -v $$tool >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends bubblewrap slirp4netns util-linux iproute2; fi

chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# The reference of bench/runtime.py (bench/reference_env.py: a Flask app under bjoern, the serving
# mode of Fission's Python environment) in its own virtualenv from its own lock, made from the
# interpreter the runtime's workers use by default (runtime/interpreters.py), so that reference and
# workers run the same Python. bjoern is an sdist: it compiles against Debian's libev-dev with gcc.
BENCH_REF := .build/bench-ref
bench-ref: $(BENCH_REF)/.installed

$(BENCH_REF)/.installed: requirements-bench.txt $(VENV)/.installed $(RUNTIMES)/.installed
	@dpkg -s libev-dev >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libev-dev; }
	rm -rf $(BENCH_REF) && "$$($(PY) -c 'from runtime import interpreters; r = interpreters.installed(); print(r.found[r.default].python)')" -m venv $(BENCH_REF)
	$(BENCH_REF)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	touch $@

# The router's compiled front (runtime/fastpath): front.c and llhttp's C sources, taken from
# httptools' sdist (requirements-fastpath.txt, by hash), compiled with gcc against the virtualenv's
# Python. The runtime serves without it when it is absent (runtime/fastpath/__init__.py).
fastpath: $(FASTPATH)

$(LLHTTP)/.installed: requirements-fastpath.txt $(VENV)/.installed
	rm -rf $(LLHTTP) && mkdir -p $(LLHTTP)/sdist
	$(PY) -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: --require-hashes \
		-r requirements-fastpath.txt -d $(LLHTTP)/sdist
	tar -xzf $(LLHTTP)/sdist/httptools-*.tar.gz -C $(LLHTTP) --strip-components=3 --wildcards '*/vendor/llhttp/*'
	touch $@

$(FASTPATH): runtime/fastpath/front.c $(LLHTTP)/.installed
	gcc -O2 -g -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers -fPIC -shared \
		-I"$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" -I$(LLHTTP)/include \
		runtime/fastpath/front.c $(LLHTTP)/src/api.c $(LLHTTP)/src/http.c $(LLHTTP)/src/llhttp.c -o $@

# The workers' header collector (runtime.worker._fields), compiled with gcc against each runtime
# interpreter (make runtimes) as runtime/worker/_fields<its EXT_SUFFIX>, beside the worker's code
# that sandboxes bind. A worker whose interpreter has none uses the same in Python (FieldsPy).
workerext: $(WORKEREXT)

$(WORKEREXT): runtime/worker/_fields.c $(RUNTIMES)/.installed
	@for venv in $(RUNTIMES)/python3.*; do \
		[ -f $$venv/.installed ] || continue; \
		paths="$$($$venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["include"], sysconfig.get_config_var("EXT_SUFFIX"))')"; \
		set -- $$paths; echo "workerext: runtime/worker/_fields$$2"; \
		gcc -O2 -g -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers -fPIC -shared \
			-I"$$1" runtime/worker/_fields.c -o runtime/worker/_fields$$2 || exit 1; \
	done
	touch $@

# checkov, for the chart tests (portal/tests/test_chart.py: the rendered chart and the Dockerfile), in
# its own virtualenv from its own lock: it pins packaging (and more) below the portal's, so it never
# joins .venv. Rebuilt from scratch when requirements-checkov.txt changes.
CHECKOV := .build/tools/checkov
checkov: $(CHECKOV)/.installed

$(CHECKOV)/.installed: requirements-checkov.txt
	rm -rf $(CHECKOV) && $(PYTHON) -m venv $(CHECKOV)
	$(CHECKOV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

# Debian's Prometheus for the metrics tests (make run uses it too when it is there).
prometheus:
	@command -v prometheus >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; }

run: setup sandbox
	$(PY) -m portal.up

test: setup sandbox chromium prometheus checkov
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(OFFLINE_ENV) $(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports --no-cache
	$(OFFLINE_ENV) $(PY) -W ignore::RuntimeWarning manage.py makemigrations --check --dry-run

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

wrk:
	@command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }

bench: setup sandbox wrk prometheus bench-ref
	$(PY) bench/runtime.py
	$(PY) bench/router_inprocess.py
	$(PY) bench/scale.py
	$(PY) bench/ws_fanout.py
	$(PY) bench/events.py
	$(PY) bench/pages.py
	$(PY) bench/fairness.py

reset:
	@echo "Deleting .data/ (database, Redis, secret key, admin password)."
	rm -rf .data
