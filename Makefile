# Every target sets up .venv itself (installing through constraints.txt).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint figures bench install clean peers experiments

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[all]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q equivalence_tests

lint: $(STAMP)
	$(BIN)/ruff check .

figures: $(STAMP)
	$(BIN)/python -m figures gallery
	@echo "gallery written to figures/gallery/"

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# On a machine with an NVIDIA GPU where torch and Triton are preinstalled (no .venv, nothing installed or downloaded):
# the Triton tests for real, the kernels against the torch path and the HBM floor, the model rows; under 8 minutes.
# Writes benchmarks/results/gpu_check.json and .md; without CUDA it writes that it was skipped and exits 0.
.PHONY: gpu-check
gpu-check:
	PYTHONPATH=. $(PY) -m benchmarks.gpu_check

# The Mamba paper's synthetic tasks on the fast models, into benchmarks/tasks/results/ (13 min on two idle cores)
experiments: $(STAMP)
	nice $(BIN)/python -m benchmarks.tasks run

# The conformance kit on third-party implementations, in a venv of its own (never .venv), pinned by
# equivalence_tests/peers/constraints.txt; writes equivalence_tests/peers/REPORT.md.
PEERS_VENV := .venv-peers
PEERS_BIN := $(PEERS_VENV)/bin
PEERS_C := equivalence_tests/peers/constraints.txt
PEERS_STAMP := $(PEERS_VENV)/.installed

$(PEERS_STAMP): pyproject.toml $(PEERS_C)
	test -x $(PEERS_BIN)/python || $(PY) -m venv $(PEERS_VENV)
	$(PEERS_BIN)/python -m pip install -q --upgrade -c $(PEERS_C) pip setuptools wheel packaging ninja
	$(PEERS_BIN)/python -m pip install -q -c $(PEERS_C) -e ".[fast,test]" triton einops opt-einsum jaxtyping
# the peers at pinned versions, without their dependency lists (CUDA-only packages, jax, tilelang, ...)
	env -u CUDA_HOME $(PEERS_BIN)/python -m pip install -q -c $(PEERS_C) --no-build-isolation --no-deps lrnnx
	env -u CUDA_HOME MAMBA_SKIP_CUDA_BUILD=TRUE MAMBA_FORCE_BUILD=TRUE \
		$(PEERS_BIN)/python -m pip install -q -c $(PEERS_C) --no-build-isolation --no-deps mamba-ssm
	$(PEERS_BIN)/python -m pip install -q -c $(PEERS_C) --no-deps mambapy recurrentgemma s5-pytorch
	touch $(PEERS_STAMP)

peers: $(PEERS_STAMP)
	$(PEERS_BIN)/python -m equivalence_tests.peers --out equivalence_tests/peers/REPORT.md

clean:
	rm -rf $(VENV)
