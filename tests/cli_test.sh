#!/bin/sh
# End-to-end checks of the tune program: exit codes, one-line errors that name
# the problem, and the outputs of tune plan / tune inspect. Run by `make test`
# with TUNE set to the binary. Needs python3 (stdlib only) to parse --json.
set -u
TUNE=${TUNE:-build/tune}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
checks=0

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# expect CODE NEEDLE -- ARGS...: exit status CODE, and NEEDLE in the output
# (stderr for errors, where it must be exactly one line).
expect() {
    code=$1 needle=$2
    shift 3
    checks=$((checks + 1))
    "$TUNE" "$@" >"$tmp/out" 2>"$tmp/err"
    got=$?
    if [ "$got" -ne "$code" ]; then
        fail "tune $* exited $got, want $code: $(cat "$tmp/err")"
        return
    fi
    if [ "$code" -eq 0 ] || [ "$code" -eq 3 ]; then
        grep -qF -- "$needle" "$tmp/out" || fail "tune $*: output lacks '$needle'"
    else
        [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "tune $*: error is not one line: $(cat "$tmp/err")"
        grep -qF -- "$needle" "$tmp/err" || fail "tune $*: error lacks '$needle': $(cat "$tmp/err")"
    fi
}

cfg=tests/fixtures/configs
# Bad input: one clear line and a non-zero exit.
expect 2 "no-such-model" -- plan --model no-such-model
expect 2 "malformed/config.json: invalid JSON" -- plan --model $cfg/malformed
expect 2 "unknown architecture 'MambaForCausalLM'" -- plan --model $cfg/unknown-arch
expect 2 "hidden_size" -- plan --model $cfg/negative
expect 2 "num_hidden_layers" -- plan --model $cfg/absurd
expect 2 "--seq: -5 is out of range" -- plan --model llama-3.1-8b --seq -5
expect 2 "--seq: '2k' is not an integer" -- plan --model llama-3.1-8b --seq 2k
expect 2 "--seq: 0 is out of range" -- plan --model llama-3.1-8b --seq 0
expect 2 "--params: '0' must be at least 1" -- plan --params 0
expect 2 "--params: '1e20' is absurdly large" -- plan --params 1e20
expect 2 "--params: 'seven' is not a count" -- plan --params seven
expect 2 "unknown GPU 'h900'" -- plan --model llama-3.1-8b --gpu h900
expect 2 "unknown option '--sequence'" -- plan --model llama-3.1-8b --sequence 5
expect 2 "'gate_up' is not a target" -- plan --model llama-3.1-8b --targets q,gate_up
expect 2 "--zero 2 shards over GPUs" -- plan --model llama-3.1-8b --zero 2
expect 2 "--find needs --gpu" -- plan --model llama-3.1-8b --find
expect 2 "exactly one of --model or --params" -- plan
expect 1 "no-such-model" -- inspect no-such-model
expect 2 "unknown command 'fly'" -- fly

# Help for every subcommand.
expect 0 "usage: tune plan" -- plan --help
expect 0 "usage: tune inspect" -- inspect --help
expect 0 "commands:" -- --help

# Issue 3's verdicts.
expect 0 "fits       yes" -- plan --model gpt-oss-120b --method lora --gpu h100-80
expect 3 "fits       NO" -- plan --model gpt-oss-120b --method lora --gpu h100-80 --base-dtype bf16
expect 0 "116,829,156,672" -- inspect gpt-oss-120b
expect 0 "6,738,415,616" -- inspect llama-2-7b
expect 0 "ZeRO-1 38.50, ZeRO-2 26.25, ZeRO-3 14.00 GB" -- plan --params 7B --method full --gpus 8 --zero 1 --explain
expect 0 "17.5 GB per GPU" -- plan --params 70B --method full --gpus 8 --zero 3 --explain
expect 0 "= 146.4 GB" -- plan --params 70B --method full --gpus 8 --zero 3 --grad-ckpt full --explain
expect 0 "micro-batch" -- plan --model llama-3.1-8b --method qlora --gpu rtx4090-24 --find
expect 0 "ckpt-keep    22 of 32 layers kept out of the recompute (--ckpt-keep 22)" -- plan --model llama-3.1-8b \
    --targets all-linear --grad-ckpt full --dropout 0 --gpu l4-24 --find
expect 0 "p5.48xlarge                 8x h100-80       ZeRO-1" -- plan --model llama-3.1-8b --method full --instances
expect 0 "none of the" -- plan --model llama-3.1-70b --method full --instances

# --json: one object of the documented shape.
checks=$((checks + 1))
if "$TUNE" plan --model gpt-oss-120b --method lora --r 8 --alpha 32 --targets q,k,v,o --seq 512 \
    --micro-batch 3 --gpus 2 --zero 2 --gpu h200-141 --json >"$tmp/plan.json"; then
    python3 - "$tmp/plan.json" <<'PY' || fail "--json shape"
import json, sys
p = json.load(open(sys.argv[1]))
assert p["model"]["params"] == 116829156672, p["model"]
assert p["model"]["trainable_params"] == 36 * 8 * (6976 + 3392 + 3392 + 6976)
cats = ["weights", "trainable", "grads", "optimizer", "activations", "scratch", "workspace"]
assert sum(p["per_gpu"][c] for c in cats) == p["per_gpu"]["total"]
assert p["gpu"]["name"] == "h200-141" and p["gpu"]["usable_bytes"] > 0 and p["fits"] is True
names = {e["name"] for e in p["estimates"]}
assert names == {"rule-of-thumb", "seed-worksheet", "zero-formula", "deepspeed", "transformers-peft"}, names
assert sum(b["bytes"] for b in p["buffers"] if not b["on_host"]) == p["per_gpu"]["total"]
PY
else
    fail "tune plan --json exited non-zero"
fi

# --svg: a well-formed SVG file.
checks=$((checks + 1))
"$TUNE" plan --model llama-3.1-8b --gpu h100-80 --svg "$tmp/plan.svg" >/dev/null &&
    python3 -c "import sys, xml.dom.minidom as m; m.parse(sys.argv[1])" "$tmp/plan.svg" ||
    fail "--svg did not write a well-formed SVG"
expect 1 "--svg /nonexistent/dir/x.svg: cannot write" -- plan --model llama-3.1-8b --svg /nonexistent/dir/x.svg

# tune tokenize: ids, a dataset's statistics, one-line errors naming file:line and field.
tok=tests/fixtures/tokenizer/llama3_style.tokenizer.json
dat=tests/fixtures/data
expect 0 "677 317 505 83 261 64 83 13" -- tokenize --tokenizer $tok --text "The cat sat."
expect 0 "examples    7 (0 dropped" -- tokenize --tokenizer $tok --data $dat/grading \
    --template $dat/grading.template.json --eos "<|end_of_text|>"
expect 0 "truncated   4 (to 200 tokens, keeping the start)" -- tokenize --tokenizer $tok \
    --data $dat/grading --template $dat/grading.template.json --max-length 200
# chat records need a tokenizer with the format's special tokens (llama3_style lacks the header ones)
chat_tok=examples/models/tiny-llama/tokenizer.json
expect 0 "| 5|/|5|.|<|eot_id|>" -- tokenize --tokenizer $chat_tok --data $dat/chat.jsonl --chat-format llama3
expect 1 "chat.jsonl:1: the llama3 chat format writes <|start_header_id|> as one special token, which the tokenizer" \
    -- tokenize --tokenizer $tok --data $dat/chat.jsonl --chat-format llama3
expect 1 "bad/invalid.jsonl:3: invalid JSON" -- tokenize --tokenizer $tok --data $dat/bad/invalid.jsonl
expect 1 "record 1: prompt: field 'answer' is missing (in rubric_alignment[1])" -- tokenize \
    --tokenizer $tok --data $dat/bad/missing_field.json --template $dat/grading.template.json
expect 1 "--eos: 'nope' is not a token" -- tokenize --tokenizer $tok --data $dat/text.jsonl --eos nope
expect 2 "--max-length: 'x' is not an integer" -- tokenize --tokenizer $tok --data $dat --max-length x
expect 2 "give --tokenizer FILE" -- tokenize --text hi
expect 0 "usage: tune tokenize" -- tokenize --help

# tune train on the bundled demo: a resumed run repeats the uninterrupted one
# bit for bit (every metrics row, the final adapter).
demo_train_args="--model examples/models/tiny-llama --data examples/data/grading --template examples/templates/grading.json
    --seq 128 --micro-batch 2 --epochs 1 --lr 3e-3 --dropout 0.1 --r 4 --alpha 8 --eval-split 4
    --eval-steps 4 --logging-steps 100"
train_demo() {
    "$TUNE" train $demo_train_args "$@"
}
# within_plan FILE: the memory line of tune train's output in FILE says the backend held
# at its peak no more than was planned; sets held to "HELD PLANNED".
within_plan() {
    held=$(sed -n 's/.*(\([0-9]*\) bytes of \([0-9]*\) planned).*/\1 \2/p' "$1")
    [ -n "$held" ] && [ "${held% *}" -le "${held#* }" ]
}
checks=$((checks + 1))
if train_demo --output "$tmp/run" --save-steps 4 >/dev/null 2>"$tmp/train.err"; then
    cp -r "$tmp/run" "$tmp/again" && rm -r "$tmp/again/final"
    "$TUNE" train --resume "$tmp/again/checkpoint-8" >/dev/null 2>&1 || fail "tune train --resume exited non-zero"
    sed 's/,"tokens_per_s":[0-9.]*//' "$tmp/run/metrics.jsonl" >"$tmp/m1"
    sed 's/,"tokens_per_s":[0-9.]*//' "$tmp/again/metrics.jsonl" >"$tmp/m2"
    cmp -s "$tmp/m1" "$tmp/m2" || fail "resumed metrics differ from the uninterrupted run"
    cmp -s "$tmp/run/final/adapter_model.safetensors" "$tmp/again/final/adapter_model.safetensors" ||
        fail "resumed final adapter differs from the uninterrupted run"
    [ -s "$tmp/run/loss.svg" ] && grep -q '"eval_loss"' "$tmp/run/metrics.jsonl" || fail "no loss curve or eval rows"
    # The plan is the allocation: what the backend held at its peak is what was planned.
    train_demo --output "$tmp/mem" --max-steps 2 >"$tmp/mem.out" 2>/dev/null
    within_plan "$tmp/mem.out" || fail "measured memory above plan: '$held'"
else
    fail "tune train failed: $(tail -1 "$tmp/train.err")"
fi

# SIGKILL at any moment, saves included, leaves only whole checkpoints.
checks=$((checks + 1))
for delay in 0.15 0.35 0.55 0.75 0.95; do
    rm -rf "$tmp/kill"
    # tune itself in the background (not a subshell running it), so that the kill reaches it.
    "$TUNE" train $demo_train_args --output "$tmp/kill" --save-steps 1 >/dev/null 2>&1 &
    pid=$!
    sleep $delay
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    for c in "$tmp"/kill/checkpoint-*; do
        [ -d "$c" ] || continue
        for f in adapter_config.json adapter_model.safetensors optimizer.safetensors trainer_state.json; do
            [ -s "$c/$f" ] || fail "killed after ${delay}s: $c lacks $f"
        done
        "$TUNE" eval --model examples/models/tiny-llama --adapter "$c" --data examples/data/grading --template examples/templates/grading.json \
            --seq 128 >/dev/null 2>&1 || fail "killed after ${delay}s: $c does not load"
    done
done

# A non-finite loss stops the run naming the step and the last checkpoint;
# --skip-nonfinite skips such steps instead. Every weight here is NaN.
checks=$((checks + 1))
cp -r examples/models/tiny-llama "$tmp/nan-model"
st="$tmp/nan-model/model.safetensors"
header=$(od -An -tu8 -N8 "$st" | tr -d ' ')
data=$(($(wc -c <"$st") - 8 - header))
head -c $data /dev/zero | tr '\0' '\377' | dd of="$st" bs=65536 seek=$((8 + header)) oflag=seek_bytes conv=notrunc 2>/dev/null
nan_train="--model $tmp/nan-model --data examples/data/grading --template examples/templates/grading.json --seq 128 --max-steps 2"
if "$TUNE" train $nan_train --output "$tmp/nan" >/dev/null 2>"$tmp/nan.err"; then
    fail "a NaN loss did not stop the run"
else
    grep -q "step 1: the loss (.*) or gradient norm (.*) is not finite; nothing of this step was applied; last checkpoint: none saved yet" \
        "$tmp/nan.err" || fail "NaN loss: $(cat "$tmp/nan.err")"
fi
if "$TUNE" train $nan_train --output "$tmp/nan-skip" --skip-nonfinite >/dev/null 2>"$tmp/nan.err"; then
    [ "$(grep -c '"loss":null,.*"skipped":true' "$tmp/nan-skip/metrics.jsonl")" = 2 ] ||
        fail "--skip-nonfinite: skipped steps not in metrics.jsonl"
    grep -q "step 2: .* not finite; skipped (--skip-nonfinite)" "$tmp/nan.err" || fail "--skip-nonfinite: no warning"
else
    fail "--skip-nonfinite: $(tail -1 "$tmp/nan.err")"
fi

# A run that does not fit is refused before the data or the weights are read.
checks=$((checks + 1))
if "$TUNE" train $demo_train_args --micro-batch 65536 --seq 1024 --output "$tmp/nofit" >"$tmp/nofit.out" 2>&1; then
    fail "a run of 65536 x 1024 tokens was not refused"
else
    grep -q "the plan needs .* on the cpu device, which has .* available: the largest micro-batch that fits at --seq 1024 is [0-9]*, the longest --seq at --micro-batch 65536 is [0-9]*" \
        "$tmp/nofit.out" || fail "no fit: $(cat "$tmp/nofit.out")"
    grep -q "^data" "$tmp/nofit.out" && fail "no fit: the data was read first"
fi

# A save that cannot be written (a full disk, here a file-size limit) stops the run naming
# the file, and the checkpoint before it stays whole.
checks=$((checks + 1))
if train_demo --output "$tmp/disk" --max-steps 6 --save-steps 2 >/dev/null 2>&1; then
    rm -r "$tmp/disk/checkpoint-4" "$tmp/disk/final"
    if (trap '' XFSZ; ulimit -f 100; "$TUNE" train --resume "$tmp/disk/checkpoint-2" >/dev/null 2>"$tmp/disk.err"); then
        fail "a save past the file-size limit did not fail"
    else
        grep -q "tune train: $tmp/disk/.checkpoint-4.tmp/[a-z_]*.safetensors: write failed: File too large" "$tmp/disk.err" ||
            fail "failed save: $(tail -1 "$tmp/disk.err")"
        [ ! -e "$tmp/disk/checkpoint-4" ] || fail "failed save: a checkpoint-4 was left"
        "$TUNE" eval --model examples/models/tiny-llama --adapter "$tmp/disk/checkpoint-2" --data examples/data/grading \
            --template examples/templates/grading.json --seq 128 >/dev/null 2>&1 || fail "failed save: checkpoint-2 lost"
    fi
else
    fail "tune train for the failed-save check failed"
fi

# Two runs never write to one output directory at once.
checks=$((checks + 1))
"$TUNE" train $demo_train_args --output "$tmp/lock" --epochs 100 >/dev/null 2>&1 &
pid=$!
for i in $(seq 200); do [ -s "$tmp/lock/metrics.jsonl" ] && break; sleep 0.05; done
if "$TUNE" train $demo_train_args --output "$tmp/lock" --max-steps 1 >/dev/null 2>"$tmp/lock.err"; then
    fail "a second run wrote to an output directory in use"
else
    grep -q "$tmp/lock: another tune run is writing to this directory" "$tmp/lock.err" ||
        fail "second run on a busy output: $(cat "$tmp/lock.err")"
fi
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null

# Full fine-tuning writes a whole model that loads as a base again.
checks=$((checks + 1))
if train_demo --output "$tmp/full" --method full --max-steps 4 --save-steps 2 >/dev/null 2>&1; then
    "$TUNE" eval --model "$tmp/full/final" --data examples/data/grading --template examples/templates/grading.json \
        --seq 128 >/dev/null 2>&1 || fail "the fully fine-tuned model does not load"
    cp -r "$tmp/full" "$tmp/full2" && rm -r "$tmp/full2/final"
    "$TUNE" train --resume "$tmp/full2/checkpoint-2" >/dev/null 2>&1 || fail "full fine-tuning does not resume"
    cmp -s "$tmp/full/final/model.safetensors" "$tmp/full2/final/model.safetensors" ||
        fail "resumed full fine-tuning differs from the uninterrupted run"
else
    fail "tune train --method full failed"
fi

# gpt-oss end to end (examples/models/tiny-gptoss, bf16): LoRA on q, k, v, o
# trains, lowers the loss, and the adapter loads back; LoRA on the experts trains too and
# generates;
# LoRA on the router trains and saves as PEFT's target_parameters. Six steps see different batches, so the eval loss of the whole set,
# base against adapter, is the firmer of the two loss checks.
gptoss="--model examples/models/tiny-gptoss --data examples/data/grading --template examples/templates/grading.json
    --seq 128"
checks=$((checks + 1))
if "$TUNE" train $gptoss --micro-batch 2 --max-steps 6 --r 4 --alpha 8 --targets q,k,v,o --lr 3e-3 \
    --output "$tmp/gptoss" >"$tmp/gptoss.out" 2>"$tmp/gptoss.err"; then
    python3 - "$tmp/gptoss/metrics.jsonl" <<'PY' || fail "gpt-oss: the training loss did not fall"
import json, math, sys
loss = [json.loads(line)["loss"] for line in open(sys.argv[1])]
if len(loss) != 6 or not all(isinstance(x, float) and math.isfinite(x) for x in loss) or not loss[-1] < loss[0]:
    sys.exit(f"gpt-oss step losses: {loss}")
PY
    within_plan "$tmp/gptoss.out" || fail "gpt-oss: measured memory above plan: '$held'"
    base=$("$TUNE" eval $gptoss 2>"$tmp/gptoss.err" | sed -n 's/^eval_loss \([0-9.]*\) .*/\1/p')
    tuned=$("$TUNE" eval $gptoss --adapter "$tmp/gptoss/final" 2>>"$tmp/gptoss.err" | sed -n 's/^eval_loss \([0-9.]*\) .*/\1/p')
    if [ -z "$base" ] || [ -z "$tuned" ]; then
        fail "gpt-oss: tune eval of the base or the adapter failed: $(tail -1 "$tmp/gptoss.err")"
    else
        awk -v base="$base" -v tuned="$tuned" 'BEGIN { exit !(tuned < base) }' ||
            fail "gpt-oss: the adapter's eval loss $tuned is not below the base's $base"
    fi
else
    fail "tune train on tiny-gptoss failed: $(tail -1 "$tmp/gptoss.err")"
fi
# An adapter saved in half precision (as one from a bf16 or fp16 model often is) loads and merges: made here
# from the one just trained, its factors in BF16, beside the same values widened to F32; tune eval and tune
# merge give the same results from both, to the bit.
checks=$((checks + 1))
python3 - "$tmp/gptoss/final" "$tmp/half" "$tmp/widened" <<'PY' || fail "could not make the half-precision adapter"
import json, os, shutil, struct, sys
src, half, wide = sys.argv[1:4]
raw = open(os.path.join(src, "adapter_model.safetensors"), "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
outs = {half: ({}, []), wide: ({}, [])}
for name, t in header.items():
    if name == "__metadata__":
        continue
    a, b = t["data_offsets"]
    words = struct.unpack(f"<{(b - a) // 4}I", raw[8 + n + a:8 + n + b])
    top = [((w + 0x7FFF + ((w >> 16) & 1)) >> 16) & 0xFFFF for w in words]  # round to nearest even
    for d, data in ((half, struct.pack(f"<{len(top)}H", *top)), (wide, struct.pack(f"<{len(top)}I", *[x << 16 for x in top]))):
        h, blobs = outs[d]
        at = sum(len(x) for x in blobs)
        h[name] = {"dtype": "BF16" if d == half else "F32", "shape": t["shape"], "data_offsets": [at, at + len(data)]}
        blobs.append(data)
for d, (h, blobs) in outs.items():
    os.makedirs(d)
    shutil.copy(os.path.join(src, "adapter_config.json"), d)
    text = json.dumps(h).encode()
    text += b" " * (-len(text) % 8)
    with open(os.path.join(d, "adapter_model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
PY
half_loss=$("$TUNE" eval $gptoss --adapter "$tmp/half" 2>"$tmp/half.err" | sed -n 's/^eval_loss \([0-9.]*\) .*/\1/p')
wide_loss=$("$TUNE" eval $gptoss --adapter "$tmp/widened" 2>>"$tmp/half.err" | sed -n 's/^eval_loss \([0-9.]*\) .*/\1/p')
[ -n "$half_loss" ] && [ "$half_loss" = "$wide_loss" ] ||
    fail "a BF16 adapter evaluates to '$half_loss', its values in F32 to '$wide_loss': $(tail -1 "$tmp/half.err")"
expect 0 "merged" -- merge --model examples/models/tiny-gptoss --adapter "$tmp/half" --output "$tmp/merged-half"
expect 0 "merged" -- merge --model examples/models/tiny-gptoss --adapter "$tmp/widened" --output "$tmp/merged-wide"
cmp -s "$tmp/merged-half/model.safetensors" "$tmp/merged-wide/model.safetensors" ||
    fail "merging a BF16 adapter wrote another model than merging its values in F32"
expect 0 "done       2 steps" -- train $gptoss --targets q,k,v,o,gate_up,down --dropout 0 --max-steps 2 \
    --output "$tmp/gptoss-experts"
expect 0 "Question:" -- generate --model examples/models/tiny-gptoss --adapter "$tmp/gptoss-experts/final" \
    --prompt "Question:" --max-new 8
expect 1 "LoRA dropout on the router and the experts: PEFT has none there" -- train $gptoss --targets gate_up --dropout 0.1 \
    --max-steps 1 --output "$tmp/gptoss-dropout"
expect 0 "done       1 steps" -- train $gptoss --targets q,router --dropout 0 --max-steps 1 --output "$tmp/gptoss-router"
grep -qF '"target_parameters":	["mlp.router.weight"]' "$tmp/gptoss-router/final/adapter_config.json" ||
    fail "the router's LoRA is not saved as PEFT's target_parameters"
expect 1 "LoRA dropout on the router and the experts: PEFT has none there" -- train $gptoss --targets router \
    --dropout 0.1 --max-steps 1 --output "$tmp/gptoss-router-dropout"
# full fine-tuning of every parameter: the saved model (experts back in transformers' [E, in, out])
# loads again and evaluates below the base
expect 0 "done       4 steps" -- train $gptoss --method full --micro-batch 2 --max-steps 4 --lr 1e-3 \
    --output "$tmp/gptoss-full"
full_loss=$("$TUNE" eval --model "$tmp/gptoss-full/final" --data examples/data/grading \
    --template examples/templates/grading.json --seq 128 2>>"$tmp/gptoss.err" | sed -n 's/^eval_loss \([0-9.]*\) .*/\1/p')
awk -v base="$base" -v full="$full_loss" 'BEGIN { exit !(full != "" && full < base) }' ||
    fail "gpt-oss full fine-tuning: the saved model's eval loss '$full_loss' is not below the base's $base"

# Harmony on gpt-oss: chat records render in harmony (the model's format) with the loss on the
# assistant's part through <|return|>; the chat-format generation opens the assistant's turn and
# stops at <|return|> or <|call|>. To see the stop, a copy of tiny-gptoss whose LM head scores
# only those two (rows +1 and -1: one of them wins at every position) and whose
# generation_config no longer lists them: without --chat-format it runs to --max-new.
expect 0 "[<|start|>]|[as]|[s]|[i]|[st]|[an]|[t]|<|channel|>|f|in|al|<|message|>|S|co|re" -- tokenize \
    --tokenizer examples/models/tiny-gptoss/tokenizer.json --data examples/data/chat.jsonl --chat-format harmony
expect 0 "done       2 steps" -- train --model examples/models/tiny-gptoss --data examples/data/chat.jsonl --seq 512 \
    --max-steps 2 --output "$tmp/harmony"
# harmony's system message states a date, today's by default: a run keeps the day it started among
# its saved arguments, so that --resume renders the same tokens on another day; llama3's is fixed
today=$(date +%Y-%m-%d)
checks=$((checks + 1))
grep -qF "\"--chat-date\", \"$today\"" "$tmp/harmony/training_args.json" ||
    fail "a harmony run did not keep its date: $(cat "$tmp/harmony/training_args.json")"
expect 1 "chat.jsonl:1: chat date '2025-13-01': not a date of the form YYYY-MM-DD" -- train \
    --model examples/models/tiny-gptoss --data examples/data/chat.jsonl --chat-date 2025-13-01 --output "$tmp/bad-date"
expect 0 "done       1 steps" -- train --model examples/models/tiny-llama --data examples/data/chat.jsonl \
    --chat-format llama3 --max-steps 1 --output "$tmp/llama3-chat"
checks=$((checks + 1))
grep -q "chat-date" "$tmp/llama3-chat/training_args.json" && fail "a llama3 run pinned a date it does not state"
# harmony's reasoning effort: stated in the system message, checked where it is given
expect 0 "Reasoning: high" -- generate --model examples/models/tiny-gptoss --chat-format auto \
    --reasoning-effort high --prompt "Hi" --max-new 1
expect 2 "--reasoning-effort: 'max' is not low, medium or high" -- train --model examples/models/tiny-gptoss \
    --data examples/data/chat.jsonl --reasoning-effort max --output "$tmp/bad-effort"
cp -r examples/models/tiny-gptoss "$tmp/stops"
python3 - "$tmp/stops" <<'PY' || fail "could not make the stop-token model"
import json, struct, sys
folder = sys.argv[1]
tok = {t["content"]: t["id"] for t in json.load(open(f"{folder}/tokenizer.json"))["added_tokens"]}
with open(f"{folder}/model.safetensors", "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    head = json.loads(f.read(n))["lm_head.weight"]
    assert head["dtype"] == "BF16"
    rows, cols = head["shape"]
    f.seek(8 + n + head["data_offsets"][0])
    one, minus = struct.pack("<H", 0x3F80), struct.pack("<H", 0xBF80)
    f.write(b"".join((one if r == tok["<|return|>"] else minus if r == tok["<|call|>"] else b"\0\0") * cols
                     for r in range(rows)))
gen = json.load(open(f"{folder}/generation_config.json"))
gen["eos_token_id"] = tok["<|endoftext|>"]
json.dump(gen, open(f"{folder}/generation_config.json", "w"))
PY
checks=$((checks + 1))
"$TUNE" generate --model "$tmp/stops" --chat-format harmony --prompt "Hi" --max-new 3 >"$tmp/out" 2>"$tmp/err"
tail -c 20 "$tmp/out" | grep -qF "<|start|>assistant" && grep -qE "^generated 0 tokens, stopped at <\|(return|call)\|>$" "$tmp/err" ||
    fail "generate --chat-format harmony did not stop at <|return|> or <|call|>: $(tail -c 60 "$tmp/out") $(cat "$tmp/err")"
checks=$((checks + 1))
"$TUNE" generate --model "$tmp/stops" --prompt "Hi" --max-new 3 >"$tmp/out" 2>"$tmp/err"
grep -qF "generated 3 tokens, --max-new reached" "$tmp/err" ||
    fail "generate without a chat format stopped: $(cat "$tmp/err")"
expect 1 "harmony chat format writes <|start|> as one special token" -- generate --model examples/models/tiny-llama \
    --chat-format harmony --prompt "Hi"

# Checkpointing changes what is kept, not what is computed: on tiny-llama (4 layers) full
# checkpointing with its last layer kept (--ckpt-keep 1: layers 0 and 1 recomputed, 2 from the
# recompute buffers, 3 kept) trains the adapter of no checkpointing, bit for bit, dropout on.
ck="--model examples/models/tiny-llama --data examples/data/grading --template examples/templates/grading.json
    --seq 128 --micro-batch 2 --max-steps 3 --dropout 0.1"
expect 0 "done       3 steps" -- train $ck --grad-ckpt none --output "$tmp/ck-none"
expect 0 "done       3 steps" -- train $ck --grad-ckpt full --ckpt-keep 1 --output "$tmp/ck-keep"
cmp -s "$tmp/ck-none/final/adapter_model.safetensors" "$tmp/ck-keep/final/adapter_model.safetensors" ||
    fail "--grad-ckpt full --ckpt-keep 1 trained another adapter than --grad-ckpt none"
expect 1 "--ckpt-keep 4: keep 0 to 3 of" -- train $ck --grad-ckpt full --ckpt-keep 4 --output "$tmp/ck-all"
expect 2 "--ckpt-keep keeps some layers out of full checkpointing: it needs --grad-ckpt full" -- plan \
    --model llama-3.1-8b --ckpt-keep 1

# tune merge on gpt-oss: the experts' and the router's LoRA fold into the weights (test_llama checks the
# values against PEFT's); into experts kept in MXFP4, every expert is written dequantized and the config
# loses its quantization_config, the rest of it as it was
expect 0 "merged tests/fixtures/tiny-gptoss + tests/fixtures/tiny-gptoss/adapter_router" -- merge \
    --model tests/fixtures/tiny-gptoss --adapter tests/fixtures/tiny-gptoss/adapter_router --output "$tmp/merged-oss"
expect 0 "merged tests/fixtures/tiny-gptoss-mxfp4" -- merge --model tests/fixtures/tiny-gptoss-mxfp4 \
    --adapter tests/fixtures/tiny-gptoss/adapter_experts --output "$tmp/merged-mxfp4"
checks=$((checks + 1))
python3 - tests/fixtures/tiny-gptoss-mxfp4/config.json "$tmp/merged-mxfp4/config.json" <<'PY' ||
import json, sys
base, merged = (json.load(open(p)) for p in sys.argv[1:3])
base.pop("quantization_config")
if merged != base or '"swiglu_limit": 7.0' not in open(sys.argv[2]).read():
    sys.exit(1)
PY
    fail "the merged MXFP4 model's config.json is not the base's without quantization_config"
# --max-shard-size takes transformers' byte amounts; shards made one tensor at a time hold the same bytes
expect 0 "merged" -- merge --model tests/fixtures/tiny-gptoss-mxfp4 --adapter tests/fixtures/tiny-gptoss/adapter_experts \
    --output "$tmp/merged-5gb" --max-shard-size 5GB
cmp -s "$tmp/merged-mxfp4/model.safetensors" "$tmp/merged-5gb/model.safetensors" ||
    fail "merge --max-shard-size 5GB wrote another model than the default (5e9 bytes)"
expect 0 "merged" -- merge --model tests/fixtures/tiny-gptoss-mxfp4 --adapter tests/fixtures/tiny-gptoss/adapter_experts \
    --output "$tmp/merged-shards" --max-shard-size 100KiB
checks=$((checks + 1))
[ "$(ls "$tmp/merged-shards" | grep -c '^model-0000[0-9]-of-00005.safetensors$')" -eq 5 ] &&
    [ -f "$tmp/merged-shards/model.safetensors.index.json" ] ||
    fail "merge --max-shard-size 100KiB: not five shards and an index: $(ls "$tmp/merged-shards")"
# merged again into that folder in one file: the earlier shards and index go, as with save_pretrained
expect 0 "merged" -- merge --model tests/fixtures/tiny-gptoss-mxfp4 --adapter tests/fixtures/tiny-gptoss/adapter_experts \
    --output "$tmp/merged-shards"
checks=$((checks + 1))
[ "$(ls "$tmp/merged-shards" | grep -c 'safetensors')" -eq 1 ] && [ -f "$tmp/merged-shards/model.safetensors" ] ||
    fail "a merge over an earlier sharded one left its files: $(ls "$tmp/merged-shards")"
cp -r tests/fixtures/tiny-llama "$tmp/base-copy"
expect 1 "is the base model's folder: the merged model would replace it" -- merge --model "$tmp/base-copy" \
    --adapter tests/fixtures/tiny-llama/adapter --output "$tmp/base-copy/."
expect 2 "--max-shard-size: '5XB' is not a byte amount" -- merge --model tests/fixtures/tiny-gptoss-mxfp4 \
    --adapter tests/fixtures/tiny-gptoss/adapter_experts --output "$tmp/merged-bad" --max-shard-size 5XB

# A --config YAML file holds the same flags; the command line overrides it.
printf 'data: examples/data/text.jsonl\nseq: 64\nmax-steps: 3\nlr: 1e-3\n' >"$tmp/run.yaml"
expect 0 "done       2 steps" -- train --config "$tmp/run.yaml" --model examples/models/tiny-llama --output "$tmp/yaml" --max-steps 2
printf 'data: [a, b]\n' >"$tmp/bad.yaml"
expect 2 "write lists as" -- train --config "$tmp/bad.yaml" --model examples/models/tiny-llama

expect 1 "none.json: cannot open" -- train --model examples/models/tiny-llama --data "$tmp/none.json" --output "$tmp/x"
expect 2 "--data and --output are required" -- train --model examples/models/tiny-llama
expect 2 "'xx' is not a target" -- train --model examples/models/tiny-llama --data examples/data/grading --output "$tmp/x" --targets xx
printf '{"format": "tune-checkpoint-1", "global_step": 4}' >"$tmp/run/checkpoint-4/trainer_state.json"
expect 1 "trainer_state.json: epoch: missing" -- train --resume "$tmp/run/checkpoint-4"
# A resume with another LoRA rank, a model whose weights do not match its config: one line each.
expect 1 "adapter_model.safetensors: tensor 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight' is F32 [4, 128], expected [8, 128]" \
    -- train $demo_train_args --r 8 --output "$tmp/other" --resume "$tmp/run/checkpoint-8"
# Pickled weights (transformers' and PEFT's older .bin files) are named as such, not as missing safetensors.
mkdir -p "$tmp/pickled" "$tmp/pickled-adapter"
cp examples/models/tiny-llama/config.json examples/models/tiny-llama/tokenizer.json "$tmp/pickled/"
touch "$tmp/pickled/pytorch_model.bin" "$tmp/pickled-adapter/adapter_model.bin"
cp tests/fixtures/tiny-llama/adapter/adapter_config.json "$tmp/pickled-adapter/"
expect 1 "holds PyTorch pickle weights (pytorch_model.bin), which tune does not read" -- eval --model "$tmp/pickled" \
    --data examples/data/text.jsonl --seq 64
expect 1 "adapter_model.bin: a PyTorch pickle, which tune does not read" -- merge --model examples/models/tiny-llama \
    --adapter "$tmp/pickled-adapter" --output "$tmp/from-pickle"
cp -r examples/models/tiny-llama "$tmp/mismatch" && sed -i 's/"intermediate_size": [0-9]*/"intermediate_size": 100/' "$tmp/mismatch/config.json"
expect 1 "model.safetensors: tensor 'model.layers.0.mlp.gate_proj.weight' has 2 dims (49152 elements), expected [100, 128]" \
    -- train --model "$tmp/mismatch" --data examples/data/grading --template examples/templates/grading.json --output "$tmp/mm"

# tune inspect: a model folder written by transformers' save_pretrained (weights checked
# tensor by tensor against config.json), safetensors files, datasets. A folder whose
# weights or tokenizer do not fit its config reports everything, then exits 1.
# out_has NEEDLE: NEEDLE in the stdout of the last expect.
out_has() {
    checks=$((checks + 1))
    grep -qF -- "$1" "$tmp/out" || fail "output lacks '$1': $(head -c 2000 "$tmp/out")"
}
tiny=tests/fixtures/tiny-llama
expect 0 "check          ok: the 21 tensors of LlamaForCausalLM" -- inspect $tiny
out_has "tensors        21 in 1 file, 96.62 KiB, 24,736 elements"
out_has "dtypes         F32 21 (96.62 KiB)"
out_has "tokenizer      none (no tokenizer.json in the folder)"
expect 0 "model.layers.1.self_attn.v_proj.weight          F32     [16, 32]" -- inspect $tiny --tensors
expect 0 "model.layers.1.self_attn.v_proj.weight          F32     [16, 32]" -- inspect $tiny/model.safetensors
expect 0 "metadata       format: np" -- inspect tests/fixtures/safetensors/single.safetensors
out_has "scalar          F32     []"
expect 0 "shards         2" -- inspect tests/fixtures/safetensors/sharded
out_has "model.layers.0.mlp.experts.gate_up_proj_blocks  U8      [2, 4, 2, 16]  (model-00001-of-00002.safetensors)"
mkdir -p "$tmp/model"
cp $tiny/model.safetensors $tiny/generation_config.json "$tmp/model/"
cp $tok "$tmp/model/tokenizer.json"
sed 's/"num_hidden_layers": 2/"num_hidden_layers": 3/; s/"intermediate_size": 64/"intermediate_size": 48/' \
    $tiny/config.json >"$tmp/model/config.json"
expect 1 "the weights or the tokenizer do not fit config.json" -- inspect "$tmp/model"
out_has "check          FAILED, the weights would not load: 9 missing, 6 wrong shape (of 30 expected, 21 in the files)"
out_has "  missing      model.layers.2.mlp.down_proj.weight [32, 48]"
out_has "  wrong shape  model.layers.0.mlp.up_proj.weight is [64, 32], config.json says [48, 32]"
out_has "tokenizer      tokenizer.json, 683 ids, 4 special"
out_has "check          FAILED: the tokenizer has 683 ids but the embedding 96 rows"
expect 2 "are for datasets" -- inspect $tiny --tokenizer $tok
expect 1 "nothing-here: no such model folder, file or preset" -- inspect nothing-here
expect 0 "7  {feedback, max_score, normalized_score, rubric_alignment, score}" -- inspect $dat/grading
out_has "tokens         not counted: give --tokenizer FILE or --model DIR"
expect 0 "longer than    200 tokens: 4 of 7 examples (57.1%)" -- inspect $dat/grading --tokenizer $tok \
    --template $dat/grading.template.json --max-length 200
out_has "examples       7 (0 dropped: no trained token)"
out_has "tokens         1,348, 548 trained (40.7%)"
out_has "length         min 58, median 211, p90 288, p99 288, max 289, mean 192.6"
out_has "          129-256        3  ########################################"
expect 0 "data           $dat/grading/train_1.json (1 file," -- inspect $dat/grading/train_1.json
expect 0 "2  messages" -- inspect $dat/chat.jsonl --tokenizer $chat_tok --chat-format llama3
out_has "examples       2 (0 dropped"
expect 1 "messages: a chat record, but no chat format was given" -- inspect $dat/chat.jsonl --tokenizer $tok
expect 1 "bad/invalid.jsonl:3: invalid JSON" -- inspect $dat/bad/invalid.jsonl

# tune tokenize --json, and --file F --jsonl: one array of ids per line of F, as tokenizers
# gives them (ids from tests/fixtures/tokenizer/llama3_style.expected.json's tokenizer).
expect 0 "[677, 317, 505, 83, 261, 64, 83, 13]" -- tokenize --tokenizer $tok --text "The cat sat." --json
printf 'The cat sat.' >"$tmp/text.txt"
expect 0 "677 317 505 83 261 64 83 13" -- tokenize --tokenizer $tok --file "$tmp/text.txt"
printf '"The cat sat."\n"h\\u00e9llo \\ud83d\\ude00"\n""\n' >"$tmp/texts.jsonl"
printf '[677, 317, 505, 83, 261, 64, 83, 13]\n[677, 71, 333, 358, 220, 172, 253, 246, 222]\n[677]\n' \
    >"$tmp/want.jsonl"
expect 0 "[677]" -- tokenize --tokenizer $tok --file "$tmp/texts.jsonl" --jsonl
checks=$((checks + 1))
cmp -s "$tmp/out" "$tmp/want.jsonl" || fail "tokenize --jsonl: $(cat "$tmp/out")"
printf '"a"\n\n"b"\n' >"$tmp/blank.jsonl"
expect 1 "blank.jsonl:2: not a JSON string" -- tokenize --tokenizer $tok --file "$tmp/blank.jsonl" --jsonl
expect 2 "--jsonl reads --file F" -- tokenize --tokenizer $tok --text x --jsonl
expect 2 "give --text or --file, not both" -- tokenize --tokenizer $tok --text x --file "$tmp/text.txt"

echo "cli_test: $checks checks, $failures failed"
[ "$failures" -eq 0 ]
