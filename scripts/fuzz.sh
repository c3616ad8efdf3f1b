#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser that reads bytes from the network (docs/fuzzing.md):
# builds the cargo-fuzz targets in fuzz/ once, then runs each for SECONDS (default 60). Exits
# non-zero if any target crashed, and prints where libFuzzer saved the crashing input.
#
#   scripts/fuzz.sh              every target for 60 s
#   scripts/fuzz.sh 20           every target for 20 s (what CI runs)
#   scripts/fuzz.sh 300 cursor   only the named targets
#
# Toolchain: cargo-fuzz needs nightly-only `-Z` flags. With a nightly toolchain installed
# (rustup) it is used; otherwise the stable toolchain runs with RUSTC_BOOTSTRAP=1, which is how
# a stable compiler accepts them. FUZZ_TOOLCHAIN=stable|nightly forces one.
#
# Sanitizer: AddressSanitizer by default; FUZZ_SANITIZER=none leaves it out. The server has no
# `unsafe` code, and a panic (overflow, index, failed assertion) is caught either way: ASan only
# adds checks of the C and `unsafe` code of dependencies (SQLite, ring…), for a slower build and
# about half the executions per second. CI (CI=true) uses none for speed; run with ASan here.
#
# The seed corpora (fuzz/corpus/<target>/) are read, never written: inputs libFuzzer finds go to
# fuzz/work/<target>/ (git-ignored, emptied at each run), crashes to fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
case "$seconds" in
  '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

toolchain="${FUZZ_TOOLCHAIN:-}"
if [ -z "$toolchain" ]; then
  if command -v rustup >/dev/null 2>&1 && rustup toolchain list | grep -q '^nightly'; then
    toolchain=nightly
  else
    toolchain=stable
  fi
fi
cargo_cmd=(cargo)
if command -v rustup >/dev/null 2>&1; then
  cargo_cmd+=("+$toolchain")
fi
if [ "$toolchain" != nightly ]; then
  # The supported way to let a stable compiler take `-Z` flags.
  export RUSTC_BOOTSTRAP=1
fi

if [ -n "${FUZZ_SANITIZER:-}" ]; then
  sanitizer="$FUZZ_SANITIZER"
elif [ "${CI:-}" = true ]; then
  sanitizer=none
else
  sanitizer=address
fi

cd fuzz
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <("${cargo_cmd[@]}" fuzz list)
fi

# Release with debug assertions and overflow checks: an overflow is a crash, as in a debug build.
build_flags=(--release --debug-assertions --sanitizer "$sanitizer")

echo "== building ${#targets[@]} fuzz targets ($toolchain, sanitizer $sanitizer)"
start=$(date +%s)
if [ "$#" -gt 0 ]; then
  for target in "${targets[@]}"; do
    "${cargo_cmd[@]}" fuzz build "${build_flags[@]}" "$target"
  done
else
  "${cargo_cmd[@]}" fuzz build "${build_flags[@]}"
fi
echo "== built in $(( $(date +%s) - start )) s"

failed=()
for target in "${targets[@]}"; do
  work="work/$target"
  rm -rf "$work"
  mkdir -p "$work" "artifacts/$target" corpus/"$target"
  log="work/$target.log"
  echo "== $target: ${seconds} s"
  # The working corpus comes first: libFuzzer adds what it finds to the first directory only.
  if "${cargo_cmd[@]}" fuzz run "${build_flags[@]}" "$target" "$work" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
    >"$log" 2>&1; then
    grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
    grep -E '#[0-9]+ +DONE' "$log" | tail -1 || true
  else
    failed+=("$target")
    tail -40 "$log"
    artifact=$(grep -oE 'Test unit written to [^ ]+' "$log" | tail -1 | sed 's/Test unit written to //' || true)
    echo "!! $target crashed; input saved at ${artifact:-fuzz/artifacts/$target/} (full log: fuzz/$log)"
    echo "!! reproduce: cd fuzz && ${cargo_cmd[*]} fuzz run ${build_flags[*]} $target ${artifact:-<artifact>}"
  fi
done

echo "== fuzzed ${#targets[@]} targets for ${seconds} s each in $(( $(date +%s) - start )) s"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "!! crashed: ${failed[*]}"
  exit 1
fi
echo "== no crash"
