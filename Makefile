# Each target sets up what it needs first (scripts/setup.sh: .venv, KaTeX, Chromium).
PY := .venv/bin/python
export NO_MKDOCS_2_WARNING := 1

.PHONY: setup serve build test test-loaded portability bench clean

setup:
	@bash scripts/setup.sh

## Build everything, then serve at http://127.0.0.1:8000 with live reload;
## saving a snippet re-runs that snippet alone and reloads the page. A failing
## snippet does not stop the server: its pages show the error until it is fixed.
serve: setup
	$(PY) -m mkdocs serve -a 127.0.0.1:8000 --livereload

## Run every snippet (cached), draw the infographics, mkdocs build --strict.
build: setup
	$(PY) scripts/build.py

## The whole test suite (builds first, reusing the snippet cache).
test: setup
	@start=$$(date +%s); \
	$(PY) -m pytest tests; status=$$?; \
	echo "make test: wall time $$(( $$(date +%s) - start ))s"; exit $$status

## The same, while two other CPU-bound processes compete for the cores.
test-loaded: setup
	@bash scripts/with_load.sh $(MAKE) --no-print-directory test

## Every snippet under the native, AVX2 and no-SIMD CPU kernel sets (and 2 threads),
## each into its own cache; prints a table of what failed where.
portability: setup
	$(PY) scripts/portability.py

## Build-time benchmark (cold, no-change and one-change rebuilds; per-snippet overhead).
bench: setup
	$(PY) scripts/benchmark.py

clean:
	rm -rf build site
