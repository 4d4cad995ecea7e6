/* The training step of tune on a random-weight model at a preset's real
 * shapes, timed: what bench_gpu_train.py sets beside transformers+PEFT.
 *
 *   build/cuda/train_step --model llama-3.1-8b --method lora --r 16 --alpha 32
 *       --targets all-linear --seq 2048 --micro-batch 1 --grad-ckpt none --steps 10 --warmup 3
 *
 * Each step is what `tune train` does per optimizer step with grad-accum 1:
 * zero the gradients, forward + backward over micro-batch rows of --seq
 * random tokens (one sequence per row, labels = ids, the model shifts them),
 * the global gradient norm, clipping to 1.0 and AdamW. Prints one JSON
 * object: tokens/s over the steps after the warmup (the device is waited for
 * before each clock reading), the plan's total, what the backend held at its
 * peak (plan buffers + its workspace), and the device's bytes in use. With
 * --print-config it prints the preset's config.json instead, so that the
 * baseline builds the very same model. With --profile each op is timed on
 * its own (profile.h) and a table of where the step's time goes follows;
 * --offload-checkpoints keeps full checkpointing's layer inputs in host memory;
 * --expert-layers 7,15,23 puts the experts' LoRA in those layers only;
 * --no-graphs runs every step op by op (by default a step of the same token
 * count as the one before is a replayed CUDA graph, as in `tune train`);
 * --vary-tokens cuts each step's last row by another count of tokens (0 to
 * seq / 4 - 1), as a packed run's batches differ in size. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/cuda/backend_cuda.h"
#include "backend/profile.h"
#include "base/rng.h"
#include "model/llama.h"
#include "plan/run.h"
#include "train/optimizer.h"

static void die(const char *msg)
{
    fprintf(stderr, "train_step: %s\n", msg);
    exit(1);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *opt(int argc, char **argv, const char *name, const char *fallback)
{
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name))
            return argv[i + 1];
    return fallback;
}

int main(int argc, char **argv)
{
    tune_err err = {{0}};
    const char *model = opt(argc, argv, "--model", "llama-3.2-1b");
    if (argc == 3 && !strcmp(argv[2], "--print-config")) {
        const char *cfg = spec_preset_config(argv[1]);
        if (!cfg)
            die("no such preset");
        puts(cfg);
        return 0;
    }
    struct model_spec spec;
    struct run_config rc;
    if (spec_resolve(&spec, model, &err))
        die(err.msg);
    run_config_default(&rc, &spec);
    rc.device = DEVICE_CUDA;
    rc.method = strcmp(opt(argc, argv, "--method", "lora"), "full") ? METHOD_LORA : METHOD_FULL;
    rc.lora_r = atoll(opt(argc, argv, "--r", "16"));
    rc.lora_alpha = atof(opt(argc, argv, "--alpha", "32"));
    rc.lora_dropout = 0;
    rc.seq = atoll(opt(argc, argv, "--seq", "2048"));
    rc.micro_batch = atoll(opt(argc, argv, "--micro-batch", "1"));
    int ckpt = run_lookup(run_grad_ckpt_names, GRAD_CKPT_COUNT, opt(argc, argv, "--grad-ckpt", "none"));
    if (ckpt < 0)
        die("--grad-ckpt: none, full or selective");
    rc.grad_ckpt = (enum grad_ckpt)ckpt;
    for (int i = 1; i < argc; i++)
        rc.offload_checkpoints = rc.offload_checkpoints || !strcmp(argv[i], "--offload-checkpoints");
    rc.ckpt_keep_layers = atoll(opt(argc, argv, "--ckpt-keep", "0"));
    const char *expert_layers = opt(argc, argv, "--expert-layers", NULL);
    if (run_parse_targets(&rc, &spec, opt(argc, argv, "--targets", "q,k,v,o"), &err) ||
        (expert_layers && run_parse_expert_layers(&rc, &spec, expert_layers, &err)) || run_validate(&rc, &spec, &err))
        die(err.msg);
    int steps = atoi(opt(argc, argv, "--steps", "10")), warmup = atoi(opt(argc, argv, "--warmup", "3"));

    struct backend *gpu = backend_cuda(0, &err), *be = gpu;
    if (!gpu)
        die(err.msg);
    bool profile = false, no_graphs = false, vary = false;
    for (int i = 1; i < argc; i++) {
        profile = profile || !strcmp(argv[i], "--profile");
        no_graphs = no_graphs || !strcmp(argv[i], "--no-graphs");
        vary = vary || !strcmp(argv[i], "--vary-tokens");
    }
    if (profile && !(be = backend_profiled(gpu)))
        die("out of memory");
    struct llama m;
    if (llama_init(&m, &spec, &rc, be, 1, &err))
        die(err.msg);
    m.unrecorded = no_graphs;
    llama_init_random(&m, 1);
    llama_init_lora(&m);
    if (rc.method == METHOD_FULL)
        llama_init_masters(&m);

    int64_t T = rc.micro_batch * rc.seq;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)T), *starts = malloc(sizeof(int32_t) * (size_t)(rc.micro_batch + 1));
    if (!ids || !starts)
        die("out of memory");
    uint64_t state = 7;
    for (int64_t t = 0; t < T; t++)
        ids[t] = (int32_t)(rng_next(&state) % (uint64_t)spec.vocab);
    for (int64_t r = 0; r <= rc.micro_batch; r++)
        starts[r] = (int32_t)(r * rc.seq);
    /* Labels are the next token of each row; the last of a row is ignored. */
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)T);
    if (!labels)
        die("out of memory");
    for (int64_t t = 0; t < T; t++)
        labels[t] = (t + 1) % rc.seq ? ids[t + 1] : -100;
    struct llama_batch b = {ids, labels, starts, T, rc.micro_batch};
    struct adamw_config adamw = {2e-4, 0.9, 0.999, 1e-8, 0.0};

    double t0 = 0, loss = 0;
    int64_t timed_tokens = 0;
    for (int s = 0; s < warmup + steps; s++) {
        if (s == warmup) {
            if (backend_cuda_check(gpu, &err))
                die(err.msg);
            if (profile)
                backend_profile_reset(be);
            t0 = now();
        }
        int64_t counted, cut = vary ? (int64_t)s * 37 % (rc.seq / 4) : 0;
        b.tokens = T - cut;
        starts[rc.micro_batch] = (int32_t)b.tokens;
        labels[b.tokens - 1] = -100; /* the shortened row's last token */
        llama_zero_grads(&m);
        if (llama_step(&m, &b, true, 1.0f / (float)(b.tokens - rc.micro_batch), (uint64_t)s, &loss, &counted, &err))
            die(err.msg);
        if (cut)
            labels[b.tokens - 1] = ids[b.tokens];
        timed_tokens += s >= warmup ? b.tokens : 0;
        double norm = optim_grad_norm(be, &m.arena);
        optim_clip(be, &m.arena, norm, 1.0);
        optim_adamw_step(be, &m.arena, &adamw, adamw.lr, s + 1);
        if (rc.method == METHOD_FULL)
            llama_refresh_weights(&m);
    }
    if (backend_cuda_check(gpu, &err))
        die(err.msg);
    double seconds = now() - t0;
    if (profile)
        backend_profile_print(be, stderr, steps);
    char name[256];
    size_t used, total;
    backend_cuda_device_info(gpu, name, sizeof name, &used, &total);
    printf("{\"model\":\"%s\",\"tokens_per_s\":%.1f,\"step_ms\":%.2f,\"loss\":%.6f,\"planned_bytes\":%lld,"
           "\"held_peak_bytes\":%lld,\"device_used_bytes\":%zu,\"device\":\"%s\",\"trainable\":%lld,"
           "\"graphs\":%s}\n",
           model, (double)timed_tokens / seconds, 1e3 * seconds / steps, loss / (double)(b.tokens - rc.micro_batch),
           (long long)m.plan.total, (long long)(gpu->bytes_peak + (int64_t)backend_cuda_workspace_bytes(gpu)), used, name,
           (long long)m.plan.trainable_params, m.records[1].graph ? "true" : "false");
    llama_free(&m);
    if (profile)
        backend_profile_free(be);
    backend_cuda_free(gpu);
    free(ids);
    free(labels);
    free(starts);
    return 0;
}
