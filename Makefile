# The two commands of the README, and a few more for developers.
.PHONY: run test bench lint prereqs

# Run the gateway on the offline default config (release build).
run: prereqs
	cargo run --release --bin kikaku-edge -- serve -c conf/kikaku.yaml

# Every test of the workspace: unit tests of both crates, the integration
# tests that start the real binary, and one pass of each bench as a smoke test.
test: prereqs
	cargo test --workspace --all-targets

bench: prereqs
	cargo bench --bench filter_chain

lint: prereqs
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

prereqs:
	@./scripts/prereqs.sh
