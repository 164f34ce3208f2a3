#!/usr/bin/env bash
# Builds the libFuzzer driver (Fuzz/, address sanitizer) and runs each fuzz target for SECONDS
# seconds (default 60), one process at a time. Prints executions per target. A crash, leak-free
# OOM or timeout is minimized (-minimize_crash=1) into Tests/FuzzRegressions/<target>/, which the
# unit tests replay (Tests/FuzzRegressionTests); the script then exits 1.
#   scripts/fuzz.sh [SECONDS] [TARGET...]     targets: model tensor npy image external
# FUZZ_CONFIG=release builds the driver optimized (-O, still ASan and coverage): 3-4x the
# executions per second of the default debug build, for long campaigns; the debug build (CI's
# smoke) keeps Swift's overflow and bounds traps, which -Ounchecked release code drops.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECONDS_PER_TARGET=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(model tensor npy image external)
SWIFT=${SWIFT:-swift}

start=$(date +%s)
# The linker is the default gold, whose warnings about ASan helper symbols it cannot export are
# filtered out. SwiftPM 6.3.1 passes `-sanitize=fuzzer` to the link only, not to the compiles: the
# libraries came out with ASan but without coverage counters (a driver with ~3,000 counters, the
# fuzzer running blind), so -Xswiftc asks for the coverage instrumentation on every Swift target.
# The check below refuses a driver built without it.
BUILD=$ROOT/Fuzz/.build
CONFIG=${FUZZ_CONFIG:-debug}
case $CONFIG in debug|release) ;; *) echo "fuzz: FUZZ_CONFIG is debug or release, not '$CONFIG'" >&2; exit 1 ;; esac
(cd Fuzz && $SWIFT build -q -c "$CONFIG" --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize=fuzzer 2>&1 | grep -v "Cannot export local symbol" ; exit "${PIPESTATUS[0]}") \
  || { echo "fuzz: building the driver (Fuzz/) failed" >&2; exit 1; }
BIN=$BUILD/$CONFIG/compress-fuzz
echo "fuzz: driver built in $(( $(date +%s) - start )) s"

# The readers write their scratch files to TMPDIR: keep them in memory where possible.
[ -d /dev/shm ] && [ -w /dev/shm ] && export TMPDIR=/dev/shm
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}
# Swift's crash handler reads the dying process's memory, which ASan reports as a second crash.
export SWIFT_BACKTRACE=enable=no
WORK=$BUILD/fuzz-work
# Refuse a driver whose libraries are not instrumented (the fuzzer would run blind): the
# -Onone build has ~82,000 coverage counters, one with uninstrumented libraries ~3,000.
counters=$(COMPRESS_FUZZ_TARGET=npy "$BIN" -runs=0 2>&1 | grep -o '([0-9]* inline 8-bit counters)' | grep -o '[0-9]*' | head -1 || true)
[ "${counters:-0}" -gt 20000 ] || { echo "fuzz: the driver has ${counters:-no} coverage counters; rebuild it (rm -rf Fuzz/.build)" >&2; exit 1; }
found=0
for t in "${TARGETS[@]}"; do
  corpus=$WORK/corpus/$t
  artifacts=$WORK/artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  seeds=("$ROOT/Fuzz/Seeds/$t")
  if [ "$t" = model ]; then
    # The small fixtures (under 20 kB) seed the model decoder.
    mkdir -p "$WORK/fixtures"
    find "$ROOT/Fixtures" -maxdepth 1 -name '*.onnx' -size -20k -exec cp {} "$WORK/fixtures/" \;
    seeds+=("$WORK/fixtures")
  fi
  [ -d "$ROOT/Tests/FuzzRegressions/$t" ] && seeds+=("$ROOT/Tests/FuzzRegressions/$t")
  log=$WORK/$t.log
  set +e
  COMPRESS_ARENA=off COMPRESS_FUZZ_TARGET=$t "$BIN" "$corpus" "${seeds[@]}" \
    -max_total_time="$SECONDS_PER_TARGET" -timeout=30 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
  cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -o 'cov: [0-9]*' || true)
  printf 'fuzz: %-9s %12s executions in %s s, %s, exit %d\n' "$t" "${execs:-?}" "$SECONDS_PER_TARGET" "${cov:-cov: ?}" "$rc"
  for a in "$artifacts"/crash-* "$artifacts"/oom-* "$artifacts"/timeout-* "$artifacts"/leak-*; do
    [ -e "$a" ] || continue
    found=1
    dest=$ROOT/Tests/FuzzRegressions/$t
    mkdir -p "$dest"
    out=$dest/$(basename "$a")
    echo "fuzz: $t: $(basename "$a"), minimizing into ${out#$ROOT/}"
    COMPRESS_ARENA=off COMPRESS_FUZZ_TARGET=$t "$BIN" -minimize_crash=1 -max_total_time=60 -timeout=30 -rss_limit_mb=2048 \
      -exact_artifact_path="$out" "$a" >"$WORK/$t.minimize.log" 2>&1 || true
    [ -e "$out" ] || cp "$a" "$out"
    rm -f "$a"
    grep -m3 -E 'ERROR|Fatal error|panic|SUMMARY' "$log" | sed 's/^/    /' || true
  done
  if [ $rc -ne 0 ] && [ $found -eq 0 ]; then echo "fuzz: $t exited $rc without an artifact; see $log" >&2; found=1; fi
done
exit $found
