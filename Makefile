# The workflow as commands. `make demo` and `make test` each set up what they need first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
JOBS   ?= 2
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: setup system data release check-release lint test test-fast demo grade-class bench calibrate clean

setup: $(VENV)/.installed data

# Debian's Fashion-MNIST and bubblewrap, when this machine lets us install them (root + apt), and
# Chromium, which the class report's browser test opens the report in (skipped without it).
system:
	@if dpkg -s dataset-fashion-mnist bubblewrap chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist bubblewrap >/dev/null; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 \
	    || echo "note: no chromium package here: the class report's browser test will be skipped"; \
	else echo "note: install Debian's dataset-fashion-mnist, bubblewrap and chromium (sudo apt-get install dataset-fashion-mnist bubblewrap chromium)"; fi

$(VENV)/.installed: pyproject.toml | system
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[cluster,dev,canvas]'
	touch $@

# Link Fashion-MNIST into Keras' cache; prints how to get it when it is missing.
data: $(VENV)/.installed
	-@$(PY) -m autograder data

# Regenerate release/ and solutions/ from source/ (commit both).
release: setup
	$(PY) -m autograder assign

check-release: setup
	$(PY) -m autograder assign --verify

# ruff, configured in pyproject.toml ([tool.ruff]); fails on any finding.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

test: setup lint
	$(PY) -m pytest tests -q -rs --durations=15

# The linter, then the tests without the slow, TensorFlow-training ones.
test-fast: setup lint
	$(PY) -m pytest tests -q -rs -m "not slow"

# The main job: release the assignment and grade the bundled demo class end to end.
demo: setup
	$(PY) -m autograder demo --jobs $(JOBS)

# Grade the class in the current course folder (run from the course root).
grade-class: setup
	$(PY) -m autograder grade-class batchnorm --jobs $(JOBS)

bench: setup
	$(PY) benchmarks/bench_class.py --jobs $(JOBS)

calibrate: setup
	$(PY) benchmarks/calibrate_training_check.py

clean:
	rm -rf demo-course autograded feedback gradebook.db .pytest_cache
