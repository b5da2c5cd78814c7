#!/usr/bin/env bash
# Runs every cargo-fuzz target in tests/fuzz for a fixed time each, prints the executions and
# the crashing inputs each run found, and appends one line per target to tests/fuzz/RESULTS.md.
#
#   scripts/fuzz.sh [--seconds N] [--target NAME]... [--sanitizer address|none]
#
# Works on stable Rust: RUSTC_BOOTSTRAP=1 unlocks the -Z flags cargo-fuzz passes. Needs
# `cargo install cargo-fuzz` and a C++ compiler (libFuzzer is built from source). The first
# build instruments every dependency and takes a while; CARGO_BUILD_JOBS defaults to 1.
# Crashing inputs land in tests/fuzz/artifacts/<target>/ (not committed); once fixed, copy
# them to tests/fuzz/regressions/<target>/, which tests/fuzz_replay.rs replays on stable.
set -euo pipefail

seconds=300
sanitizer=address
targets=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --target) targets+=("$2"); shift 2 ;;
        --sanitizer) sanitizer="$2"; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
fuzz_dir=tests/fuzz
if [[ ${#targets[@]} -eq 0 ]]; then
    targets=(request_stream request_body record_batch segment_recovery)
fi
export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
fuzz_flags=(--fuzz-dir "$fuzz_dir" --release --debug-assertions --sanitizer "$sanitizer")

if [[ ! -d "$fuzz_dir/seeds" ]]; then
    echo "writing seeds to $fuzz_dir/seeds"
    cargo test --release --test fuzz_replay -- --ignored write_seeds --quiet
fi
cargo fuzz build "${fuzz_flags[@]}"

# The segment target writes its scratch segments under TMPDIR; keep them in one place.
scratch="$(mktemp -d -t corelog-fuzz.XXXXXX)"
trap 'rm -rf "$scratch"' EXIT
commit="$(git rev-parse --short HEAD)"
if ! git diff --quiet HEAD -- src tests/fuzz; then
    commit="$commit+dirty"
fi
results="$fuzz_dir/RESULTS.md"
if [[ ! -f "$results" ]]; then
    cat > "$results" <<'EOF'
# Fuzzing results

One line per target per `scripts/fuzz.sh` run. `execs` counts inputs run; `crashes` counts the
distinct crashing inputs (crash, out-of-memory or timeout) saved to `artifacts/<target>/`.

| date (UTC) | commit | target | sanitizer | seconds | execs | crashes |
|---|---|---|---|---|---|---|
EOF
fi

summary=()
for target in "${targets[@]}"; do
    corpus="$fuzz_dir/corpus/$target"
    artifacts="$fuzz_dir/artifacts/$target"
    mkdir -p "$corpus" "$artifacts"
    before="$(find "$artifacts" -type f | wc -l)"
    log="$scratch/$target.log"
    touch "$scratch/$target.start"
    echo "== $target: ${seconds}s"
    # Fork mode with ignore_* keeps fuzzing after a crash, so one run reports all it finds.
    TMPDIR="$scratch" cargo fuzz run "${fuzz_flags[@]}" "$target" "$corpus" \
        "$fuzz_dir/seeds/$target" -- \
        -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 \
        -max_total_time="$seconds" -max_len=16384 -timeout=10 \
        -rss_limit_mb=2048 -malloc_limit_mb=512 \
        -artifact_prefix="$artifacts/" >"$log" 2>&1 || true
    # Fork mode reports progress as "#<execs>: cov: ... crash: ..." lines; take the last.
    execs="$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')"
    execs="${execs:-0}"
    grep -oE 'oom/timeout/crash: [0-9/]+' "$log" | tail -1 | sed 's/^/   /' || true
    after="$(find "$artifacts" -type f | wc -l)"
    crashes=$((after - before))
    if [[ "$execs" -eq 0 ]]; then
        echo "   no executions; last lines of the log:"
        tail -20 "$log" | sed 's/^/   /'
    fi
    echo "   execs: $execs, new crashing inputs: $crashes"
    if [[ "$crashes" -gt 0 ]]; then
        find "$artifacts" -type f -newer "$scratch/$target.start" | sed 's/^/   /' 
        echo "   reproduce: cargo fuzz run --fuzz-dir $fuzz_dir $target <input>"
    fi
    cp "$log" "$fuzz_dir/artifacts/$target.last.log"
    date_utc="$(date -u +%Y-%m-%dT%H:%MZ)"
    echo "| $date_utc | $commit | $target | $sanitizer | $seconds | $execs | $crashes |" \
        >>"$results"
    summary+=("$target: $execs execs, $crashes crashes")
done

echo "== summary (appended to $results)"
printf '   %s\n' "${summary[@]}"
