# streamgmm: two commands do everything on a fresh machine with only python3:
#   make demo       run the live demo (daemon + synthetic sensor + watcher, writes a PNG);
#                   installs only what it needs: the package and its plot extra
#   make test       create .venv if missing, install the package with its test extras and
#                   every optional extra the tests cover, run pytest and the doctests
#   make test-fast  the tests that start no daemon and no other process (a few minutes less)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Everything the tests need (the optional extras they test included)...
STAMP := $(VENV)/.installed
# ...and the demo's share of it: one venv, so `make test` after `make demo` only adds.
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: test test-fast demo pictures bench bench-dask soak lint fuzz fuzz-regress clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,plot,dask,ros,pointclouds,rerun,foxglove]"
	touch $(STAMP) $(DEMO_STAMP)

$(DEMO_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[plot]"
	touch $(DEMO_STAMP)

# The tests, then the docstring examples (documentation that must stay true).
test: $(STAMP)
	$(PY) -m pytest -q
	$(PY) -m pytest -q --doctest-modules streamgmm

# Markers set in tests/conftest.py: no real daemon, no other process.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not daemon and not subprocess"

demo: $(DEMO_STAMP)
	$(PY) -m streamgmm.demo

# Regenerates the README's pictures in docs/img/ on purpose (the demo and the examples write
# into the untracked demo-out/ otherwise); about a minute.
pictures: $(STAMP)
	$(PY) examples/plot_mixture.py docs/img/mixture.png
	$(PY) examples/plot_learning_curve.py docs/img/learning_curve.png
	$(PY) -m streamgmm.demo --seconds 10 --out docs/img/demo-mixture.png
	$(PY) examples/plot_foxglove_mcap.py docs/img/foxglove-mcap.png

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

# Batch EM on a LocalCluster of 1, 2, ... workers against in-process fit and scikit-learn.
bench-dask: $(STAMP)
	$(PY) benchmarks/bench_dask.py

# 10 minutes at 100,000 points/s, then 60 s at twice the daemon's capacity (not in CI).
soak: $(STAMP)
	$(PY) benchmarks/soak.py

# Coverage-guided fuzzing of the codec and the daemon's handlers (not in CI; see fuzz/README.md).
fuzz: $(STAMP)
	$(PY) -m pip install --quiet -r fuzz/requirements.txt
	mkdir -p fuzz/work/corpus
	$(PY) fuzz/fuzz_codec.py fuzz/work/corpus fuzz/corpus/codec -atheris_runs=1000000 -max_len=8192 -timeout=10 -rss_limit_mb=2048 -artifact_prefix=fuzz/work/

# Replays the kept corpus and every past finding: each must pass now.
fuzz-regress: $(STAMP)
	$(PY) -m pip install --quiet -r fuzz/requirements.txt
	$(PY) fuzz/fuzz_codec.py -runs=0 fuzz/corpus/codec
	$(PY) fuzz/fuzz_codec.py fuzz/findings/*.msgpack fuzz/findings/*.bin

lint: $(STAMP)
	$(PY) -m ruff check streamgmm tests benchmarks examples

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
