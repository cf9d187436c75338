#!/usr/bin/env bash
# Bounded fuzz run of every target: scripts/fuzz.sh [seconds per target, default 60]
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly toolchain (`rustup toolchain
# install nightly`). Corpora grow under fuzz/corpus/<target>; a crash is saved under
# fuzz/artifacts/<target>/ and fails the run — turn it into a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
for target in expression catalog notice tokens; do
  seeds="fuzz/seeds/$target"
  mkdir -p "fuzz/corpus/$target"
  echo "== $target: ${secs}s"
  cargo +nightly fuzz run "$target" "fuzz/corpus/$target" "$seeds" -- \
    -max_total_time="$secs" -max_len=8192 -timeout=10 2>&1 | grep -E "^#[0-9]+.*DONE|Done [0-9]+ runs|ERROR|panicked|SUMMARY" || true
  if ls "fuzz/artifacts/$target"/crash-* >/dev/null 2>&1; then
    echo "crash found in $target: fuzz/artifacts/$target" >&2
    exit 1
  fi
done
