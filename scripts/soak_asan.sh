#!/bin/sh
# The soak (scripts/soak.py) on a build with AddressSanitizer: any invalid access, double free
# or use after free aborts the broker, which the soak reports as a signal death.
#
#     scripts/soak_asan.sh [DURATION] [soak.py flags...]     # default 10m
#
# The machine's toolchain is stable Rust, so the sanitizer flag is enabled with RUSTC_BOOTSTRAP
# (its std is not instrumented; corelog, glommio and every other crate are). The build goes to
# $CARGO_TARGET_DIR (default target/asan), away from the release build. Leak checking runs
# at exit: a leak makes the broker exit non-zero, which the soak reports too.
#
# The quarantine (freed memory ASan holds back to catch a use after free) is 16 MiB instead of
# ASan's 256 MiB: the default fills slowly over a 10-minute run and reads as 70 MiB of growth
# in the second half (seen at c7de398), while 16 MiB fills within seconds. A use after free of
# memory freed within the last 16 MiB of frees is still caught.
set -eu
cd "$(dirname "$0")/.."
duration=${1:-10m}
[ $# -gt 0 ] && shift
target_dir=${CARGO_TARGET_DIR:-target/asan}
triple=x86_64-unknown-linux-gnu
RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=address" \
    cargo build --release --target "$triple" --bin corelog --target-dir "$target_dir"
CORELOG_BIN="$(realpath "$target_dir/$triple/release/corelog")"
ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:quarantine_size_mb=16}
export CORELOG_BIN ASAN_OPTIONS
[ -x .venv/bin/python ] || { echo "run the test command of README.md once first (.venv)"; exit 2; }
exec .venv/bin/python scripts/soak.py --duration "$duration" "$@"
