#!/bin/sh
# Builds bench/cpu/attn_bench.c against libtune.a made from HEAD's sources (the same
# build tools/bench_cpu_train.py makes in build/bench-cpu/head) with the project's flags,
# and runs it with 2 OpenMP threads, under the OpenBLAS kernels this machine picks and
# under OPENBLAS_CORETYPE=SkylakeX.
set -eu
cd "$(dirname "$0")/../.."
H=build/bench-cpu/head
if [ ! -f $H/build/libtune.a ]; then
    rm -rf $H && mkdir -p $H
    git archive HEAD Makefile src | tar -x -C $H
    make -C $H -j2 -s build/tune >/dev/null
fi
cc -std=c11 -O2 -g -fopenmp -I$H/src bench/cpu/attn_bench.c $H/build/libtune.a -lopenblas -lm \
    -o build/bench-cpu/attn_bench
for core in "" SkylakeX; do
    echo "== OPENBLAS_CORETYPE=${core:-(unset)}"
    env -u OPENBLAS_CORETYPE OMP_NUM_THREADS=2 ${core:+OPENBLAS_CORETYPE=$core} build/bench-cpu/attn_bench "$@"
done
