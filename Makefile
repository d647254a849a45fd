# The two commands of the README, and a few more for developers.
.PHONY: run test bench harness lint prereqs

# Run the gateway on the offline default config (release build).
run: prereqs
	cargo run --release --bin kikaku-edge -- serve -c conf/kikaku.yaml

# Every test of the workspace: unit tests of both crates, the integration
# tests that start the real binary, and one pass of each bench as a smoke test.
test: prereqs
	cargo test --workspace --all-targets

bench: prereqs
	cargo bench --bench filter_chain

# kikaku-edge against nginx and LiteLLM on one simulator; writes BENCHMARKS.md.
# Needs nginx (apt), oha (cargo install oha --locked), LiteLLM (pip install 'litellm[proxy]').
harness:
	cargo build --release
	python3 benches/harness/run.py

lint: prereqs
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

prereqs:
	@./scripts/prereqs.sh
