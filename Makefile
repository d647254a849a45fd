# The two commands of the README, and a few more for developers.
# scripts/prereqs.sh: what the build needs (apt). scripts/test-prereqs.sh:
# the test tools, inside the project (.venv/, tests/node/node_modules).
.PHONY: run test bench harness harness-smoke lint fuzz prereqs test-prereqs

PY := .venv/bin/python3

# Run the gateway on the offline default config (release build). No Python.
run: prereqs
	cargo run --release --bin kikaku-edge -- serve -c conf/kikaku.yaml

# Every test of the workspace: unit tests of both crates, the integration
# tests that start the real binary, and one pass of each bench as a smoke test.
test: test-prereqs
	cargo test --workspace --all-targets

bench: prereqs
	cargo bench --bench filter_chain

# kikaku-edge against nginx and LiteLLM on one simulator; writes BENCHMARKS.md.
# scripts/harness-prereqs.sh installs nginx (apt), oha (cargo) and LiteLLM (its own venv).
harness: prereqs
	./scripts/harness-prereqs.sh
	cargo build --release --features harness-baseline
	$(PY) benches/harness/run.py

# CI: the harness on the debug build for 2 s a point; checks that everything
# starts and answers and that a report comes out (target/harness-smoke.md).
harness-smoke: prereqs
	./scripts/harness-prereqs.sh
	cargo build --bins --features harness-baseline
	$(PY) benches/harness/run.py --smoke

# Every fuzz target of fuzz/ for FUZZ_SECONDS each (default 600; CI runs 20).
# Needs the nightly toolchain; installs cargo-fuzz when missing.
FUZZ_SECONDS ?= 600
fuzz: prereqs
	./scripts/fuzz.sh $(FUZZ_SECONDS)

lint: prereqs
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --all-features -- -D warnings

prereqs:
	@./scripts/prereqs.sh

test-prereqs:
	@./scripts/test-prereqs.sh
