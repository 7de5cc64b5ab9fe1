# The two set-up commands of README.md. Each creates .venv/ when missing and installs pinned
# dependencies into it; nothing is installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo-output

.PHONY: demo test benchmark

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# The review page's viewer (NiiVue), from npm at the locked version, served locally.
NIIVUE := Resources/Review/node_modules/.package-lock.json
$(NIIVUE): Resources/Review/package-lock.json
	npm ci --prefix Resources/Review --no-audit --no-fund --loglevel=error

$(VENV)/.test-installed: $(VENV)/.installed $(NIIVUE)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	command -v dwi2tensor >/dev/null || bash Testing/install_mrtrix3.sh
	command -v chromium >/dev/null || apt-get install -y --no-install-recommends chromium \
		|| (apt-get update && apt-get install -y --no-install-recommends chromium)
	touch $@

demo: $(VENV)/.installed
	-@command -v npm >/dev/null && $(MAKE) --no-print-directory $(NIIVUE) \
		|| echo "npm not found: install Node.js and run make $(NIIVUE) for the review page"
	$(BIN)/dtisynth demo --out $(DEMO_OUT)

test: $(VENV)/.test-installed
	$(BIN)/python -m pytest -q

benchmark: $(VENV)/.test-installed
	$(BIN)/python benchmarks/bench_tensor_fit.py
	$(BIN)/python benchmarks/bench_simulation.py
	$(BIN)/python benchmarks/bench_training.py
	$(BIN)/python benchmarks/bench_synthesis.py
	$(BIN)/python benchmarks/bench_quality.py
	$(BIN)/python benchmarks/bench_autoencoder.py
	$(BIN)/python benchmarks/bench_demo.py
	$(BIN)/python benchmarks/bench_cohort.py
