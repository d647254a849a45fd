# The two commands of the README, and a few more for developers.
.PHONY: run test bench harness harness-smoke lint prereqs

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
# scripts/harness-prereqs.sh installs nginx (apt), oha (cargo) and LiteLLM (pip).
harness: prereqs
	./scripts/harness-prereqs.sh
	cargo build --release --features harness-baseline
	python3 benches/harness/run.py

# CI: the harness on the debug build for 2 s a point; checks that everything
# starts and answers and that a report comes out (target/harness-smoke.md).
harness-smoke: prereqs
	./scripts/harness-prereqs.sh
	cargo build --bins --features harness-baseline
	python3 benches/harness/run.py --smoke

lint: prereqs
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --all-features -- -D warnings

prereqs:
	@./scripts/prereqs.sh
