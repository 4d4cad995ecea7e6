#!/bin/sh
# Runs the libFuzzer targets that `make fuzz` builds (tests/fuzz/fuzz_*.c), from the
# repository root, each seeded with the fixtures of its format:
#
#   sh tests/fuzz/run.sh check CC              exit 0 when CC can build libFuzzer targets
#   sh tests/fuzz/run.sh run DIR SECONDS NAME...  runs DIR/NAME for SECONDS each
#
# First the inputs of tests/fuzz/crashes/NAME/ run once each: every crash a target ever
# found stays there as a regression test (a file per bug, named for it). Then the fuzzing:
# new inputs accumulate in DIR/corpus/NAME (seeds are copied in first, so the fixtures stay
# untouched); a crash, leak or timeout is kept as DIR/crashes/NAME-* and fails the run.
# One line per target: executions, corpus size, and the verdict.
set -u

seeds() {
    f=tests/fixtures
    case $1 in
    fuzz_safetensors) echo $f/safetensors/single.safetensors $f/safetensors/sharded/*.safetensors \
        $f/tiny-llama/adapter/*.safetensors $f/ops/matmul.safetensors $f/ops/adamw.safetensors ;;
    fuzz_spec) echo $f/configs/*/config.json $f/tiny-llama/config.json ;;
    fuzz_tokenizer_load) echo $f/tokenizer/*.tokenizer.json $f/tokenizer/*.tiktoken $f/tokenizer/bad/* ;;
    esac
    # Seeds in a target's own input layout (an option byte first, NUL-separated parts, one
    # case per file) made from the fixtures by tests/fuzz/make_seeds.py.
    [ -d tests/fuzz/seeds/$1 ] && echo tests/fuzz/seeds/$1/*
}

case ${1:-} in
check)
    cc=${2:-clang}
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' >"$tmp/t.c"
    command -v "$cc" >/dev/null 2>&1 && "$cc" -fsanitize=fuzzer,address,undefined "$tmp/t.c" -o "$tmp/t" 2>/dev/null
    exit $?
    ;;
run)
    shift
    dir=$1 secs=$2
    shift 2
    ;;
*)
    echo "usage: $0 check CC | run DIR SECONDS NAME..." >&2
    exit 2
    ;;
esac

failed=0
for name in "$@"; do
    corpus=$dir/corpus/$name
    mkdir -p "$corpus" "$dir/crashes" "$dir/logs"
    for s in $(seeds "$name"); do
        [ -f "$s" ] && cp "$s" "$corpus/seed-$(echo "$s" | tr '/' '_')"
    done
    log=$dir/logs/$name.log
    if [ -d "tests/fuzz/crashes/$name" ]; then
        if ! UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} "$dir/$name" tests/fuzz/crashes/"$name"/* >"$log" 2>&1; then
            failed=1
            printf '  %-22s FAILED on a kept crash input (tests/fuzz/crashes/%s/):\n' "$name" "$name"
            grep -E "^Running: |fuzz: |runtime error|ERROR: |#[0-9]+ 0x[0-9a-f]+ in .*(src|tests)/" "$log" |
                head -12 | sed 's/^/    /'
            echo "    (full log: $log)"
            continue
        fi
    fi
    # -timeout: one input taking 10 s is a hang; -rss_limit_mb: a runaway allocation. The
    # longest input is libFuzzer's default: the largest seed's size.
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} "$dir/$name" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$dir/crashes/$name-" "$corpus" >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    size=$(ls "$corpus" | wc -l)
    if [ $rc -eq 0 ]; then
        printf '  %-22s %10s runs in %ss, corpus %s: no crash\n' "$name" "${runs:-?}" "$secs" "$size"
    else
        failed=1
        printf '  %-22s FAILED after %s runs (exit %s); the input: %s\n' "$name" "${runs:-?}" "$rc" \
            "$(ls -t "$dir/crashes/$name-"* 2>/dev/null | head -1)"
        grep -E "ERROR: |fuzz: |runtime error|SUMMARY: |#[0-9]+ 0x[0-9a-f]+ in .*(src|tests)/" "$log" | head -20 |
            sed 's/^/    /'
        echo "    (full log: $log)"
    fi
done
exit $failed
