# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export CDK_DISABLE_CLI_TELEMETRY := true
export PATH := $(CURDIR)/node_modules/.bin:$(CURDIR)/$(BIN):$(PATH)

.PHONY: demo toil-demo test test-long system-deps lint typecheck unit bench toil-env synth clean

$(BIN)/shoal: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# toil: the --batchSystem shoal plugin and Toil's own batch-system tests. editable_mode=compat: Toil's
	# plugin loader only sees top-level modules on sys.path, which a default editable install hides.
	$(BIN)/pip install --quiet -e '.[dev,toil]' --config-settings editable_mode=compat
	touch $@

node_modules/.package-lock.json: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

# The main job, on this machine with no AWS account (moto serves AWS; the stack is deployed into it with the CDK
# CLI): first a real Toil workflow, examples/toil/scatter.cwl run by toil-cwl-runner --batchSystem shoal, on a
# cluster that grows from zero nodes and back (report: out/toil-demo/report.json); then `shoal demo`, a bursty
# workload of Shoal's own jobs on an accelerated clock (out/demo/report.json, out/demo/demand.png).
demo: toil-demo
	$(BIN)/shoal demo

TOIL_DEMO := out/toil-demo
REPORT_KEYS := jobs_submitted jobs_completed jobs_lost jobs_run_more_than_once max_nodes nodes_at_end \
	p50_wait_seconds p95_wait_seconds node_hours cost resources_left_after_teardown command_status
toil-demo: $(BIN)/shoal node_modules/.package-lock.json
	rm -rf $(TOIL_DEMO)
	$(BIN)/shoal local run --out $(TOIL_DEMO) -- toil-cwl-runner --batchSystem shoal --no-container \
	    --jobStore file:$(CURDIR)/$(TOIL_DEMO)/job-store --outdir $(TOIL_DEMO)/cwl-out \
	    examples/toil/scatter.cwl examples/toil/words.yml
	cat $(TOIL_DEMO)/cwl-out/shouted.txt
	$(BIN)/python -c 'import json, sys; r = json.load(open(sys.argv[1])); print(json.dumps({k: r[k] for k in sys.argv[2:]}, indent=1))' \
	    $(TOIL_DEMO)/report.json $(REPORT_KEYS)

lint: $(BIN)/shoal
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/shoal
	$(BIN)/mypy

# Toil's batch-system tests (tests/toil) import a module that needs an rsync binary.
system-deps:
	@command -v rsync >/dev/null || { apt-get update -qq && apt-get install -y -qq rsync; }

unit: $(BIN)/shoal node_modules/.package-lock.json system-deps
	$(BIN)/pytest -n 2 -m "not long"

# The slow tier: the seeded chaos run on the local cloud (minutes), on its own once the rest has passed.
test-long: $(BIN)/shoal node_modules/.package-lock.json system-deps
	$(BIN)/pytest -n 0 -m long -rA

test: lint typecheck unit test-long

bench: $(BIN)/shoal
	$(BIN)/python benchmarks/bench_plan.py

# The cluster stack's CloudFormation templates in cdk.out/ (offline; CDK CLI and Node 22 from package.json).
synth: $(BIN)/shoal node_modules/.package-lock.json
	rm -rf cdk.out
	cdk synth --quiet --no-notices --output cdk.out

# Toil in a side environment, for the side-by-side plan benchmark (not needed by anything else). Pinned: the
# benchmark drives ClusterScaler.getEstimatedNodeCounts, whose signature is Toil's to change.
TOIL_VERSION := 9.6.0
toil-env: .venv-toil/bin/python
.venv-toil/bin/python:
	$(PYTHON) -m venv .venv-toil
	.venv-toil/bin/pip install --quiet 'toil==$(TOIL_VERSION)'

clean:
	rm -rf $(VENV) node_modules cdk.out out
