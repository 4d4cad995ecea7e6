#!/bin/sh
# The embedded default job. Until the CPU training engine lands (issue 5) it
# plans the seeds' own run: gpt-oss-120b, LoRA r8 on q,k,v,o, seq 512 x 3, on
# the 2x H200 they rent, next to what their formulas say, then the same run on
# one H100.
set -eu
TUNE=${1:-build/tune}
set -x
"$TUNE" inspect gpt-oss-120b
"$TUNE" plan --model gpt-oss-120b --method lora --r 8 --alpha 32 --targets q,k,v,o \
    --seq 512 --micro-batch 3 --gpus 2 --zero 2 --gpu h200-141 --explain
"$TUNE" plan --model gpt-oss-120b --method lora --r 8 --alpha 32 --targets q,k,v,o \
    --seq 512 --micro-batch 3 --gpu h100-80 --find
