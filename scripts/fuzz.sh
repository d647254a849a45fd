#!/usr/bin/env bash
# Fuzz every target of fuzz/ (cargo-fuzz, libFuzzer) for SECONDS each
# (default 60): `make fuzz` runs longer, CI runs this with 20.
#
# Inputs: the seed corpora (fuzz/seeds/<target>, from the tests) and what
# earlier runs found (fuzz/corpus/<target>, kept between local runs, not in
# git). A crash stops the run: libFuzzer prints the input's path under
# fuzz/artifacts/<target>/, and `cargo +nightly fuzz run <target> <path>`
# replays it. Each run's figures are appended to fuzz/runs.log.
set -euo pipefail
secs="${1:-60}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: needs the nightly toolchain (rustup toolchain install nightly)" >&2
  exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked --version 0.13.2
fi

# Without AddressSanitizer: the targets are safe Rust, and what they look
# for is a panic, a hang or a broken property; ASan's build costs minutes.
# FUZZ_BUILD=dev (CI's short runs): an unoptimised build, 6.5 min cold
# against 13.5 for the optimised one, running about a sixth as many inputs
# a second; the seeds (with every input that once found a bug) still run.
if [ "${FUZZ_BUILD:-release}" = dev ]; then
  flags=(--dev -s none)
else
  flags=(-O -s none)
fi
cargo +nightly fuzz build "${flags[@]}"
for t in $(cargo +nightly fuzz list); do
  mkdir -p "corpus/$t"
  echo "fuzz: $t for ${secs}s" >&2
  out="$(mktemp)"
  status=0
  cargo +nightly fuzz run "${flags[@]}" "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$out" 2>&1 || status=$?
  runs="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$out" | grep -oE '[0-9]+$' || echo 0)"
  echo "$(date -u +%FT%TZ) $t ${secs}s runs=$runs status=$status" >>runs.log
  if [ "$status" -ne 0 ]; then
    tail -60 "$out" >&2
    echo "fuzz: $t failed (status $status); the input is under fuzz/artifacts/$t/" >&2
    rm -f "$out"
    exit 1
  fi
  rm -f "$out"
  echo "fuzz: $t ok, $runs runs" >&2
done
