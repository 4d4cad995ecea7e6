#!/bin/sh
# The embedded default job, on the CPU: LoRA fine-tuning of the bundled tiny
# Llama (examples/models/tiny-llama: 1M parameters, pretrained briefly by
# tools/ref/make_demo.py) on the bundled grading records (examples/data/grading, the
# seeds' format) through a field template, with an eval split, checkpoints,
# metrics and a loss curve; then the adapter is evaluated against the base,
# asked to grade a record, and merged into a plain model folder. Last, tune
# plan shows what the seeds' own gpt-oss-120b run needs.
set -eu
TUNE=${1:-build/tune}
OUT=${2:-build/demo-run}
rm -rf "$OUT"
set -x
"$TUNE" train --model examples/models/tiny-llama --data examples/data/grading --template examples/templates/grading.json \
    --output "$OUT" --seq 256 --micro-batch 2 --epochs 10 --lr 3e-3 --warmup-steps 5 \
    --r 16 --alpha 32 --targets all-linear --eval-split 4 --eval-steps 40 --save-steps 40 --save-total-limit 2
"$TUNE" eval --model examples/models/tiny-llama --data examples/data/grading --template examples/templates/grading.json --seq 256
"$TUNE" eval --model examples/models/tiny-llama --adapter "$OUT/final" --data examples/data/grading --template examples/templates/grading.json --seq 256
"$TUNE" generate --model examples/models/tiny-llama --adapter "$OUT/final" --max-new 32 --prompt "Grade the answers.
Q1: Why does ice float on water?
A: ice is less dense than liquid water because of its open crystal lattice.
(5 points)
Q2: What is Newton's third law?
A: I don't know.
(5 points)
Q3: Why is the sky blue?
A: Because it is like that.
(5 points)
"
"$TUNE" merge --model examples/models/tiny-llama --adapter "$OUT/final" --output "$OUT/merged"
"$TUNE" plan --model gpt-oss-120b --method lora --r 8 --alpha 32 --targets q,k,v,o \
    --seq 512 --micro-batch 3 --gpus 2 --zero 2 --gpu h200-141
