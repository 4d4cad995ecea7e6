/* The Llama engine on the CPU backend against transformers + PEFT
 * (tools/ref/make_llama_fixtures.py), on two tiny random models: a Llama with
 * llama3 rope scaling, GQA and an untied head, and a Qwen2 with q/k/v biases
 * and tied embeddings; a PEFT adapter on all seven linears; a packed batch of
 * two sequences. The loss, the gradient of every LoRA tensor, three AdamW
 * steps with a schedule and clipping, generation logits and PEFT's merge must
 * match (fp32 paths: relative L2 error < 1e-5); the adapter must survive a
 * save and a load byte for byte. And an adapter written by `tune train` on
 * examples/models/tiny-llama, loaded by PEFT, must give transformers the
 * logits tune gives with it (tests/fixtures/peft_roundtrip). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "io/safetensors.h"
#include "model/llama.h"
#include "model/merge.h"
#include "model/peft.h"
#include "train/optimizer.h"
#include "train/schedule.h"


static double rel_l2(const float *got, const float *want, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(got[i]))
            return INFINITY;
        num += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
        den += (double)want[i] * want[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

struct fixture {
    const char *dir;      /* the base model */
    char adapter[256];    /* its PEFT adapter */
    struct model_spec spec;
    struct run_config rc;
    struct llama m;
    struct st_file golden;
};

/* Loads the fixture's base model for rc on the CPU backend; with a LoRA rc,
 * its factors stay zero (no adapter). */
static void load_base(struct fixture *f, struct llama *m, const struct run_config *rc)
{
    tune_err err = {{0}};
    if (llama_init(m, &f->spec, rc, backend_cpu(), 7, &err) || llama_load_weights(m, f->dir, &err))
        fail_msg("%s: %s", f->dir, err.msg);
}

/* Loads the fixture's base model with its adapter, for rc. */
static void load_model(struct fixture *f, struct llama *m, const struct run_config *rc)
{
    load_base(f, m, rc);
    tune_err err = {{0}};
    if (peft_load_adapter(m, f->adapter, &err))
        fail_msg("%s: %s", f->adapter, err.msg);
}

/* Removes folder(s) `paths` (space-separated) and everything in them. */
static void remove_tree(const char *paths)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", paths);
    assert_int_equal(system(cmd), 0);
}

/* The spec of the base model in dir, the goldens, and the run config of the
 * adapter on the CPU backend (fp32 whatever the checkpoint's dtype); the
 * caller sets seq and the rest, and loads the model. */
static struct fixture *fixture_open(const char *dir, const char *adapter, const char *golden)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->dir = dir;
    snprintf(f->adapter, sizeof f->adapter, "%s", adapter);
    tune_err err = {{0}};
    if (spec_resolve(&f->spec, dir, &err) || st_file_open(&f->golden, golden, &err))
        fail_msg("%s", err.msg);
    run_config_default(&f->rc, &f->spec);
    f->rc.device = DEVICE_CPU;
    if (peft_read_config(adapter, &f->spec, &f->rc, &err))
        fail_msg("%s", err.msg);
    return f;
}

/* The fixture of dir with its adapter `name` and golden_name.safetensors. */
static int setup_named(void **state, const char *name, const char *golden_name)
{
    const char *dir = *state;
    char adapter[256], golden[256];
    snprintf(adapter, sizeof adapter, "%s/%s", dir, name);
    snprintf(golden, sizeof golden, "%s/%s.safetensors", dir, golden_name);
    struct fixture *f = fixture_open(dir, adapter, golden);
    f->rc.seq = st_file_find(&f->golden, "input_ids")->shape[0]; /* the packed batch in one row */
    f->rc.micro_batch = 1;
    load_model(f, &f->m, &f->rc);
    *state = f;
    return 0;
}

static int setup(void **state) { return setup_named(state, "adapter", "golden"); }

/* gpt-oss with LoRA on the experts too (PEFT's target_parameters). */
static int setup_experts(void **state) { return setup_named(state, "adapter_experts", "golden_experts"); }

/* gpt-oss with LoRA on every target, the router's weight included. */
static int setup_router(void **state) { return setup_named(state, "adapter_router", "golden_router"); }

static struct llama_batch golden_batch(struct fixture *f)
{
    const struct st_tensor *ids = st_file_find(&f->golden, "input_ids"), *labels = st_file_find(&f->golden, "labels");
    const struct st_tensor *starts = st_file_find(&f->golden, "starts");
    return (struct llama_batch){ids->data, labels->data, starts->data, ids->shape[0], starts->shape[0] - 1};
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    llama_free(&f->m);
    st_file_close(&f->golden);
    free(f);
    return 0;
}

static const float *golden_f32(struct fixture *f, const char *name, int64_t numel)
{
    const struct st_tensor *t = st_file_find(&f->golden, name);
    if (!t)
        fail_msg("golden lacks %s", name);
    assert_int_equal(t->dtype, DTYPE_F32);
    assert_int_equal(t->nbytes, numel * 4);
    return t->data;
}

static void test_loss_and_lora_grads(void **state)
{
    struct fixture *f = *state;
    struct llama_batch b = golden_batch(f);
    int32_t count = *(const int32_t *)st_file_find(&f->golden, "count")->data;
    float want_sum = *(const float *)st_file_find(&f->golden, "loss_sum")->data;

    tune_err err = {{0}};
    int64_t counted = 0;
    llama_zero_grads(&f->m);
    double loss;
    if (llama_step(&f->m, &b, true, 1.0f / (float)count, 0, &loss, &counted, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(counted, count);
    if (fabs(loss - want_sum) > 1e-5 * fabs(want_sum))
        fail_msg("loss sum %.9g, transformers %.9g", loss, want_sum);

    int checked = 0;
    double worst = 0;
    char name[256];
    for (int64_t l = 0; l < f->spec.layers; l++)
        for (int i = 0; i < LAYOUT_MAX_LINEARS; i++) {
            struct lora *lo = &f->m.layers[l].lora[i];
            if (!lo->on)
                continue;
            struct tensor *g[2] = {&lo->dA, &lo->dB};
            const char *which[2] = {"lora_A", "lora_B"};
            const struct linear_shape *li = &f->m.lin[i];
            for (int k = 0; k < 2; k++) {
                snprintf(name, sizeof name, "model.layers.%lld.%s.%s.default.weight.grad", (long long)l,
                         peft_module(&f->m, l, i), which[k]);
                int64_t n = tensor_numel(g[k]);
                float *got = g[k]->data, *peft = NULL;
                if (k == 1 && li->component == COMPONENT_EXPERTS) { /* PEFT's layout of an expert B */
                    assert_non_null(peft = malloc(sizeof(float) * (size_t)n));
                    peft_expert_b_layout(peft, got, li->stack, li->out, f->rc.lora_r, true);
                    got = peft;
                }
                double e = rel_l2(got, golden_f32(f, name, n), n);
                free(peft);
                if (e > 1e-5)
                    fail_msg("%s: relative error %.3g", name, e);
                worst = e > worst ? e : worst;
                checked++;
            }
        }
    /* every LoRA gradient of the golden file was compared */
    int in_golden = 0;
    for (int i = 0; i < f->golden.n_tensors; i++) {
        const char *n = f->golden.tensors[i].name, *tail = ".default.weight.grad";
        size_t len = strlen(n), tl = strlen(tail);
        in_golden += len > tl && !strcmp(n + len - tl, tail) && !strncmp(n, "model.layers.", 13);
    }
    assert_int_equal(checked, in_golden);
    print_message("%s: loss %.7f (transformers %.7f), %d LoRA gradients, worst relative error %.2g\n", f->dir,
                  loss / count, want_sum / count, checked, worst);
}

static void test_adapter_round_trip(void **state)
{
    struct fixture *f = *state;
    char dir[] = "/tmp/tune-adapter-XXXXXX";
    assert_non_null(mkdtemp(dir));
    tune_err err = {{0}};
    if (peft_save_adapter(&f->m, dir, f->dir, &err))
        fail_msg("%s", err.msg);
    struct st_file a, b;
    char path[512];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    assert_int_equal(st_file_open(&a, path, &err), 0);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", f->adapter);
    assert_int_equal(st_file_open(&b, path, &err), 0);
    assert_int_equal(a.n_tensors, b.n_tensors);
    for (int i = 0; i < a.n_tensors; i++) {
        const struct st_tensor *t = st_file_find(&b, a.tensors[i].name);
        assert_non_null(t);
        assert_int_equal(t->nbytes, a.tensors[i].nbytes);
        assert_memory_equal(t->data, a.tensors[i].data, (size_t)t->nbytes);
    }
    st_file_close(&a);
    st_file_close(&b);
    struct run_config rc;
    run_config_default(&rc, &f->spec);
    assert_int_equal(peft_read_config(dir, &f->spec, &rc, &err), 0);
    assert_int_equal(rc.lora_r, 4);
    assert_true(rc.lora_alpha == 8);
    assert_int_equal(rc.targets, f->rc.targets);
    remove_tree(dir);
}

/* Full checkpointing recomputes each layer from its saved input, selective
 * the element-wise outputs from the matmul outputs kept: the same ops on the
 * same inputs, with the same dropout masks (keyed by step, layer and linear),
 * so the gradients equal those kept from the forward, bit for bit. And each
 * policy keeps less than the one before. */
static void test_checkpointing_is_exact(void **state)
{
    struct fixture *f = *state;
    struct llama_batch b = golden_batch(f);
    /* then full checkpointing with the layers' inputs in host memory (here a copy like any other), and
     * with the last layer kept out of it (--ckpt-keep 1) */
    const enum grad_ckpt policy[5] = {GRAD_CKPT_NONE, GRAD_CKPT_SELECTIVE, GRAD_CKPT_FULL, GRAD_CKPT_FULL,
                                      GRAD_CKPT_FULL};
    /* PEFT has no dropout on expert parameters: those runs go without. */
    bool dropout = !(f->rc.targets & (1u << TARGET_GATE_UP | 1u << TARGET_DOWN));
    float *grads[5];
    double losses[5];
    int64_t activations[5], host[5];
    for (int ck = 0; ck < 5; ck++) {
        struct run_config rc = f->rc;
        rc.grad_ckpt = policy[ck];
        rc.offload_checkpoints = ck == 3;
        rc.ckpt_keep_layers = ck == 4;
        rc.lora_dropout = dropout ? 0.1 : 0.0;
        struct llama m;
        tune_err err = {{0}};
        load_model(f, &m, &rc);
        int64_t counted;
        llama_zero_grads(&m);
        assert_int_equal(llama_step(&m, &b, true, 0.125f, 3, &losses[ck], &counted, &err), 0);
        const struct plan_buffer *g = plan_find(&m.plan, "layers.*.self_attn.q_proj.lora_A.grad");
        assert_non_null(g);
        size_t n = (size_t)(m.plan.per_gpu[PLAN_GRADS]);
        grads[ck] = malloc(n);
        memcpy(grads[ck], m.arena.block[PLAN_GRADS], n);
        assert_int_equal(m.plan.per_gpu[PLAN_GRADS], f->m.plan.per_gpu[PLAN_GRADS]);
        activations[ck] = m.plan.per_gpu[PLAN_ACTIVATIONS];
        host[ck] = m.plan.host_bytes;
        llama_free(&m);
    }
    assert_true(losses[0] == losses[1] && losses[0] == losses[2] && losses[0] == losses[3] && losses[0] == losses[4]);
    /* (two layers here: their inputs in host memory, two device copies to compute on; one layer kept and
     * the recompute buffers are two layers' working sets, as without checkpointing) */
    assert_true(activations[0] > activations[1] && activations[1] > activations[2] && activations[2] >= activations[3]);
    assert_true(activations[4] > activations[2] && activations[4] <= activations[0]);
    assert_true(host[3] > host[2]);
    /* and the dropout did act: the loss moved away from the dropout-free one */
    float plain = *(const float *)st_file_find(&f->golden, "loss_sum")->data;
    assert_true(!dropout || fabs(losses[0] - plain) > 1e-4);
    assert_memory_equal(grads[0], grads[1], (size_t)f->m.plan.per_gpu[PLAN_GRADS]);
    assert_memory_equal(grads[0], grads[2], (size_t)f->m.plan.per_gpu[PLAN_GRADS]);
    assert_memory_equal(grads[0], grads[3], (size_t)f->m.plan.per_gpu[PLAN_GRADS]);
    assert_memory_equal(grads[0], grads[4], (size_t)f->m.plan.per_gpu[PLAN_GRADS]);
    for (int ck = 0; ck < 5; ck++)
        free(grads[ck]);
}

/* rsLoRA scales by alpha / sqrt(r) (PEFT's use_rslora): with alpha set to
 * alpha sqrt(r) / r the scale is the plain adapter's, and so is the loss
 * (transformers' golden); with alpha unchanged it is not. The setting
 * round-trips through adapter_config.json. */
static void test_rslora_scale(void **state)
{
    struct fixture *f = *state;
    struct llama_batch b = golden_batch(f);
    float want = *(const float *)st_file_find(&f->golden, "loss_sum")->data;
    double r = (double)f->rc.lora_r, loss[2];
    for (int same = 0; same < 2; same++) {
        struct run_config rc = f->rc;
        rc.use_rslora = true;
        rc.lora_alpha = same ? f->rc.lora_alpha * sqrt(r) / r : f->rc.lora_alpha;
        struct llama m;
        tune_err err = {{0}};
        int64_t counted;
        load_model(f, &m, &rc);
        assert_int_equal(llama_step(&m, &b, false, 0, 0, &loss[same], &counted, &err), 0);
        if (same) { /* saved, read back, and merged as PEFT merges it: alpha / sqrt(r), the plain merge */
            char dir[] = "/tmp/tune-rslora-XXXXXX", merged[] = "/tmp/tune-rslora-merged-XXXXXX";
            assert_non_null(mkdtemp(dir));
            assert_non_null(mkdtemp(merged));
            assert_int_equal(peft_save_adapter(&m, dir, f->dir, &err), 0);
            struct run_config back;
            run_config_default(&back, &f->spec);
            assert_int_equal(peft_read_config(dir, &f->spec, &back, &err), 0);
            assert_true(back.use_rslora);
            if (merge_lora(f->dir, dir, merged, 1LL << 30, &err))
                fail_msg("%s", err.msg);
            struct st_model mm;
            assert_int_equal(st_model_open(&mm, merged, &err), 0);
            const struct st_tensor *q = st_model_find(&mm, "model.layers.0.self_attn.q_proj.weight", NULL);
            assert_non_null(q);
            double e = rel_l2(q->data, golden_f32(f, "merged.model.layers.0.self_attn.q_proj.weight", q->nbytes / 4),
                              q->nbytes / 4);
            if (e > 1e-6)
                fail_msg("rsLoRA merge: relative error %.3g against PEFT's plain merge", e);
            st_model_close(&mm);
            char both[1100];
            snprintf(both, sizeof both, "%s %s", dir, merged);
            remove_tree(both);
        }
        llama_free(&m);
    }
    assert_true(fabs(loss[1] - want) <= 1e-5 * fabs(want));
    assert_true(fabs(loss[0] - want) > 1e-4 * fabs(want));
}

/* tune merge against PEFT's merge_and_unload on the same base and adapter. */
static void test_merge_matches_peft(void **state)
{
    struct fixture *f = *state;
    char dir[] = "/tmp/tune-merged-XXXXXX";
    assert_non_null(mkdtemp(dir));
    tune_err err = {{0}};
    if (merge_lora(f->dir, f->adapter, dir, 1LL << 30, &err))
        fail_msg("%s", err.msg);
    struct st_model merged, base;
    assert_int_equal(st_model_open(&merged, dir, &err), 0);
    assert_int_equal(st_model_open(&base, f->dir, &err), 0);
    assert_int_equal(merged.n_tensors, base.n_tensors);
    const char *names[2] = {"model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"};
    for (int i = 0; i < 2; i++) {
        char g[200];
        snprintf(g, sizeof g, "merged.%s", names[i]);
        const struct st_tensor *t = st_model_find(&merged, names[i], NULL);
        assert_non_null(t);
        double e = rel_l2(t->data, golden_f32(f, g, t->nbytes / 4), t->nbytes / 4);
        if (e > 1e-6)
            fail_msg("%s: relative error %.3g against PEFT's merge", names[i], e);
    }
    const struct st_tensor *norm = st_model_find(&merged, "model.norm.weight", NULL);
    assert_memory_equal(norm->data, st_model_find(&base, "model.norm.weight", NULL)->data, (size_t)norm->nbytes);
    st_model_close(&merged);
    st_model_close(&base);
    struct model_spec spec;
    assert_int_equal(spec_load(&spec, dir, &err), 0); /* config.json came along */
    remove_tree(dir);
}

/* Generation over a KV cache gives transformers' next-token logits, whether
 * the prompt goes in at once or one token at a time. */
static void test_decode_matches_transformers(void **state)
{
    struct fixture *f = *state;
    struct run_config rc = f->rc;
    rc.grad_ckpt = GRAD_CKPT_FULL;
    rc.lora_dropout = 0;
    struct llama m;
    tune_err err = {{0}};
    load_model(f, &m, &rc);
    const int32_t *ids = st_file_find(&f->golden, "input_ids")->data;
    int32_t n = ((const int32_t *)st_file_find(&f->golden, "starts")->data)[1];
    const float *want = golden_f32(f, "last_logits", f->spec.vocab);
    float *logits = malloc(sizeof(float) * (size_t)f->spec.vocab);
    for (int stepwise = 0; stepwise < 2; stepwise++) {
        struct llama_kv_cache kv;
        assert_int_equal(llama_kv_cache_init(&kv, &m, rc.seq, &err), 0);
        if (stepwise) {
            for (int32_t t = 0; t < n; t++)
                assert_int_equal(llama_decode(&m, &kv, ids + t, 1, logits, &err), 0);
        } else {
            assert_int_equal(llama_decode(&m, &kv, ids, n, logits, &err), 0);
        }
        double e = rel_l2(logits, want, f->spec.vocab);
        if (e > 1e-5)
            fail_msg("%s logits: relative error %.3g", stepwise ? "token-by-token" : "prefill", e);
        llama_kv_cache_free(&kv, &m);
    }
    free(logits);
    llama_free(&m);
}

/* Three optimizer steps as the trainer takes them (the same calls): AdamW
 * with weight decay, a linear schedule with one warmup step, clipping at 0.5;
 * each step's loss and gradient norm and the LoRA tensors after the third
 * equal torch's. */
static void test_three_adamw_steps(void **state)
{
    struct fixture *f = *state;
    struct llama m;
    load_model(f, &m, &f->rc);
    struct llama_batch b = golden_batch(f);
    int32_t count = *(const int32_t *)st_file_find(&f->golden, "count")->data;
    const double *losses = st_file_find(&f->golden, "steps.loss")->data;
    const double *norms = st_file_find(&f->golden, "steps.grad_norm")->data;
    struct adamw_config cfg = {1e-2, 0.9, 0.999, 1e-8, 0.01};
    tune_err err = {{0}};
    for (int64_t step = 0; step < 3; step++) {
        int64_t counted;
        llama_zero_grads(&m);
        double loss;
        assert_int_equal(llama_step(&m, &b, true, 1.0f / (float)count, (uint64_t)step, &loss, &counted, &err), 0);
        loss /= count;
        double norm = optim_grad_norm(m.be, &m.arena);
        if (fabs(loss - losses[step]) > 1e-5 * losses[step] || fabs(norm - norms[step]) > 1e-5 * norms[step])
            fail_msg("step %lld: loss %.9g (torch %.9g), grad norm %.9g (torch %.9g)", (long long)step + 1, loss,
                     losses[step], norm, norms[step]);
        optim_clip(m.be, &m.arena, norm, 0.5);
        optim_adamw_step(m.be, &m.arena, &cfg, schedule_lr(LR_SCHEDULE_LINEAR, 1e-2, step, 1, 4), step + 1);
    }
    char name[256];
    for (int64_t l = 0; l < f->spec.layers; l++)
        for (int i = 0; i < LAYOUT_MAX_LINEARS; i++) {
            struct lora *lo = &m.layers[l].lora[i];
            struct tensor *t[2] = {&lo->A, &lo->B};
            const char *which[2] = {"lora_A", "lora_B"};
            for (int k = 0; lo->on && k < 2; k++) {
                snprintf(name, sizeof name, "steps.model.layers.%lld.%s.%s.default.weight", (long long)l,
                         m.lin[i].module, which[k]);
                int64_t n = tensor_numel(t[k]);
                double e = rel_l2(t[k]->data, golden_f32(f, name, n), n);
                if (e > 1e-5)
                    fail_msg("%s after 3 steps: relative error %.3g", name, e);
            }
        }
    llama_free(&m);
}

/* Full fine-tuning: the gradient of every weight (embeddings, every linear
 * and bias, every norm, the head; tied embeddings get both uses) equals torch's. */
static void check_grad(struct fixture *f, const struct trained *t, const char *name, int *checked)
{
    if (!t->grad.data)
        fail_msg("%s is not trained", name);
    char g[256];
    snprintf(g, sizeof g, "full.%s.grad", name);
    int64_t n = tensor_numel(&t->grad);
    double e = rel_l2(t->grad.data, golden_f32(f, g, n), n);
    /* The router bias's gradient sums, over the tokens, top-k softmax gradients that sum to zero per
     * token: fp32 rounding of the terms shows relative to a smaller total (1.1e-5 on tiny-gptoss; every
     * other gradient there is within 2.8e-6). */
    double tol = strstr(name, "router.bias") ? 3e-5 : 1e-5;
    if (e > tol)
        fail_msg("%s: relative error %.3g", g, e);
    (*checked)++;
}

/* An expert linear's gradient, [E, out, in] here, against transformers' [E, in, out]. */
static void check_expert_grad(struct fixture *f, const struct trained *t, const char *name,
                              const struct linear_shape *li, int *checked)
{
    if (!t->grad.data)
        fail_msg("%s is not trained", name);
    char g[256];
    snprintf(g, sizeof g, "full.%s.grad", name);
    int64_t E = li->stack, O = li->out, K = li->in, n = E * O * K;
    const float *theirs = golden_f32(f, g, n);
    float *want = malloc(sizeof(float) * (size_t)n);
    assert_non_null(want);
    for (int64_t e = 0; e < E; e++)
        for (int64_t o = 0; o < O; o++)
            for (int64_t k = 0; k < K; k++)
                want[(e * O + o) * K + k] = theirs[(e * K + k) * O + o];
    double err = rel_l2(t->grad.data, want, n);
    free(want);
    if (err > 1e-5)
        fail_msg("%s: relative error %.3g", g, err);
    (*checked)++;
}

static void test_full_finetune_grads(void **state)
{
    struct fixture *f = *state;
    struct run_config rc = f->rc;
    rc.method = METHOD_FULL;
    rc.targets = 0;
    struct llama m;
    tune_err err = {{0}};
    load_base(f, &m, &rc);
    struct llama_batch b = golden_batch(f);
    int32_t count = *(const int32_t *)st_file_find(&f->golden, "count")->data;
    int64_t counted;
    llama_zero_grads(&m);
    double loss;
    assert_int_equal(llama_step(&m, &b, true, 1.0f / (float)count, 0, &loss, &counted, &err), 0);
    assert_false(isnan(loss));
    int checked = 0;
    char name[256];
    check_grad(f, &m.full_embed, "model.embed_tokens.weight", &checked);
    check_grad(f, &m.full_norm, "model.norm.weight", &checked);
    if (!f->spec.tie_embeddings)
        check_grad(f, &m.full_head, "lm_head.weight", &checked);
    for (int64_t l = 0; l < f->spec.layers; l++) {
        struct llama_layer *ly = &m.layers[l];
        for (int i = 0; i < LAYOUT_MAX_LINEARS && m.lin[i].module; i++) {
            bool expert = m.lin[i].component == COMPONENT_EXPERTS; /* transformers' names: no ".weight" */
            snprintf(name, sizeof name, "model.layers.%lld.%s%s", (long long)l, m.lin[i].module,
                     expert ? "" : ".weight");
            if (expert)
                check_expert_grad(f, &ly->full_w[i], name, &m.lin[i], &checked);
            else
                check_grad(f, &ly->full_w[i], name, &checked);
            if (m.lin[i].bias) {
                snprintf(name, sizeof name, "model.layers.%lld.%s%s", (long long)l, m.lin[i].module,
                         expert ? "_bias" : ".bias");
                check_grad(f, &ly->full_bias[i], name, &checked);
            }
        }
        if (ly->sinks.data) {
            snprintf(name, sizeof name, "model.layers.%lld.self_attn.sinks", (long long)l);
            check_grad(f, &ly->full_sinks, name, &checked);
        }
        snprintf(name, sizeof name, "model.layers.%lld.input_layernorm.weight", (long long)l);
        check_grad(f, &ly->full_ln_attn, name, &checked);
        snprintf(name, sizeof name, "model.layers.%lld.post_attention_layernorm.weight", (long long)l);
        check_grad(f, &ly->full_ln_mlp, name, &checked);
    }
    int want = 0;
    for (int i = 0; i < f->golden.n_tensors; i++)
        want += !strncmp(f->golden.tensors[i].name, "full.", 5);
    assert_int_equal(checked, want); /* every parameter torch has */
    llama_free(&m);
}

/* Adapters of `tune train` and transformers' logits with them: {base model, adapter}. */
static const char *const roundtrip_llama[2] = {"examples/models/tiny-llama", "tests/fixtures/peft_roundtrip"};
/* LoRA on attention, the router, and the experts of layer 1 only (--expert-layers 1) */
static const char *const roundtrip_gptoss[2] = {"examples/models/tiny-gptoss", "tests/fixtures/peft_roundtrip_gptoss"};

static int setup_roundtrip(void **state)
{
    const char *const *dirs = *state;
    char logits[256];
    snprintf(logits, sizeof logits, "%s/logits.safetensors", dirs[1]);
    struct fixture *f = fixture_open(dirs[0], dirs[1], logits);
    const struct st_tensor *starts = st_file_find(&f->golden, "starts");
    assert_non_null(starts);
    const int32_t *s = starts->data;
    f->rc.seq = 0;
    for (int64_t i = 0; i + 1 < starts->shape[0]; i++)
        f->rc.seq = s[i + 1] - s[i] > f->rc.seq ? s[i + 1] - s[i] : f->rc.seq;
    f->rc.micro_batch = 1;
    f->rc.lora_dropout = 0;
    f->rc.grad_ckpt = GRAD_CKPT_FULL; /* what llama_decode needs, as in `tune generate` */
    load_model(f, &f->m, &f->rc);
    *state = f;
    return 0;
}

/* The logits of every position of ids [n], fed one token at a time over a
 * fresh cache: out [n, V]. */
static void decode_every_position(struct llama *m, const int32_t *ids, int64_t n, float *out)
{
    tune_err err = {{0}};
    struct llama_kv_cache kv;
    if (llama_kv_cache_init(&kv, m, n, &err))
        fail_msg("%s", err.msg);
    for (int64_t t = 0; t < n; t++)
        if (llama_decode(m, &kv, ids + t, 1, out + t * m->spec->vocab, &err))
            fail_msg("position %lld: %s", (long long)t, err.msg);
    llama_kv_cache_free(&kv, m);
}

/* An adapter written by `tune train` (tests/fixtures/peft_roundtrip, on
 * examples/models/tiny-llama; tests/fixtures/peft_roundtrip_gptoss), loaded by PEFT, gives transformers the logits
 * tune gives with it (tools/ref/make_peft_roundtrip.py): every position of
 * three sequences, each decoded token by token over its own cache, within a
 * relative L2 error of 1e-5 per sequence (fp32). And the adapter matters:
 * the base model alone is off by more than 1e-2, so an adapter ignored on
 * either side would fail. */
static void test_peft_roundtrip_logits(void **state)
{
    struct fixture *f = *state;
    const struct st_tensor *ids = st_file_find(&f->golden, "input_ids"), *starts = st_file_find(&f->golden, "starts");
    assert_non_null(ids);
    assert_non_null(starts);
    assert_int_equal(ids->dtype, DTYPE_I32);
    assert_int_equal(starts->dtype, DTYPE_I32);
    const int32_t *id = ids->data, *s = starts->data;
    int64_t T = ids->shape[0], V = f->spec.vocab, S = starts->shape[0] - 1;
    assert_int_equal(s[S], T);
    const float *want = golden_f32(f, "logits", T * V);
    float *got = malloc(sizeof(float) * (size_t)(T * V)), *base = malloc(sizeof(float) * (size_t)(T * V));
    assert_non_null(got);
    assert_non_null(base);
    struct llama plain;
    load_base(f, &plain, &f->rc);
    double worst = 0, least_moved = INFINITY;
    for (int64_t i = 0; i < S; i++) {
        int64_t n = s[i + 1] - s[i];
        decode_every_position(&f->m, id + s[i], n, got + s[i] * V);
        decode_every_position(&plain, id + s[i], n, base + s[i] * V);
        double e = rel_l2(got + s[i] * V, want + s[i] * V, n * V);
        if (e > 1e-5)
            fail_msg("sequence %lld (%lld tokens): relative error %.3g against transformers + PEFT", (long long)i,
                     (long long)n, e);
        double moved = rel_l2(base + s[i] * V, want + s[i] * V, n * V);
        if (moved < 1e-2)
            fail_msg("sequence %lld: the base model alone is within %.3g of the adapter's logits", (long long)i,
                     moved);
        worst = e > worst ? e : worst;
        least_moved = moved < least_moved ? moved : least_moved;
    }
    print_message("%s: %lld sequences, %lld positions, worst relative error %.2g; without the adapter >= %.2g\n",
                  f->adapter, (long long)S, (long long)T, worst, least_moved);
    llama_free(&plain);
    free(got);
    free(base);
}

#define FIXTURE_TESTS(dir)                                                                              \
    cmocka_unit_test_prestate_setup_teardown(test_loss_and_lora_grads, setup, teardown, dir),          \
        cmocka_unit_test_prestate_setup_teardown(test_adapter_round_trip, setup, teardown, dir),       \
        cmocka_unit_test_prestate_setup_teardown(test_checkpointing_is_exact, setup, teardown, dir),   \
        cmocka_unit_test_prestate_setup_teardown(test_rslora_scale, setup, teardown, dir),             \
        cmocka_unit_test_prestate_setup_teardown(test_merge_matches_peft, setup, teardown, dir),       \
        cmocka_unit_test_prestate_setup_teardown(test_decode_matches_transformers, setup, teardown, dir), \
        cmocka_unit_test_prestate_setup_teardown(test_three_adamw_steps, setup, teardown, dir),        \
        cmocka_unit_test_prestate_setup_teardown(test_full_finetune_grads, setup, teardown, dir)

/* gpt-oss (experts, sinks, sliding and full layers, YaRN): LoRA on attention,
 * the experts and the router; full fine-tuning of every parameter. */
#define GPT_OSS_TESTS(dir)                                                                              \
    cmocka_unit_test_prestate_setup_teardown(test_loss_and_lora_grads, setup, teardown, dir),          \
        cmocka_unit_test_prestate_setup_teardown(test_decode_matches_transformers, setup, teardown, dir), \
        cmocka_unit_test_prestate_setup_teardown(test_adapter_round_trip, setup, teardown, dir),       \
        cmocka_unit_test_prestate_setup_teardown(test_checkpointing_is_exact, setup, teardown, dir),   \
        cmocka_unit_test_prestate_setup_teardown(test_three_adamw_steps, setup, teardown, dir),        \
        cmocka_unit_test_prestate_setup_teardown(test_full_finetune_grads, setup, teardown, dir),      \
        cmocka_unit_test_prestate_setup_teardown(test_loss_and_lora_grads, setup_experts, teardown, dir), \
        cmocka_unit_test_prestate_setup_teardown(test_adapter_round_trip, setup_experts, teardown, dir),   \
        cmocka_unit_test_prestate_setup_teardown(test_checkpointing_is_exact, setup_experts, teardown, dir), \
        cmocka_unit_test_prestate_setup_teardown(test_loss_and_lora_grads, setup_router, teardown, dir),    \
        cmocka_unit_test_prestate_setup_teardown(test_adapter_round_trip, setup_router, teardown, dir)

/* m's adapter saved into out (a fresh temporary folder), its config read
 * back, and loaded into a model planned from that config: the same
 * trainable parameters. Returns the config read back. */
static struct run_config adapter_reloads(struct fixture *f, const struct llama *m, const char *out)
{
    tune_err err = {{0}};
    if (peft_save_adapter(m, out, f->dir, &err))
        fail_msg("%s", err.msg);
    struct run_config back;
    run_config_default(&back, &f->spec);
    if (peft_read_config(out, &f->spec, &back, &err))
        fail_msg("%s", err.msg);
    back.seq = m->rc.seq;
    struct llama again;
    load_base(f, &again, &back);
    if (peft_load_adapter(&again, out, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(again.plan.trainable_params, m->plan.trainable_params);
    llama_free(&again);
    return back;
}

/* tune merge on gpt-oss against PEFT's merge_and_unload: the experts'
 * stacked factors (both parameters adapted, so gate_up's one wrapper deeper)
 * folded into transformers' [E, in, out] weights, and the router's as a
 * Linear's; every other tensor copied. */
static void test_merge_gptoss(void **state)
{
    (void)state;
    const char *dir = "tests/fixtures/tiny-gptoss";
    const char *const adapters[2][3] = {
        {"tests/fixtures/tiny-gptoss/adapter_experts", "tests/fixtures/tiny-gptoss/golden_experts.safetensors",
         "model.layers.1.mlp.experts.down_proj"},
        {"tests/fixtures/tiny-gptoss/adapter_router", "tests/fixtures/tiny-gptoss/golden_router.safetensors",
         "model.layers.0.mlp.router.weight"}};
    for (int k = 0; k < 2; k++) {
        char out[] = "/tmp/tune-merge-gptoss-XXXXXX", g[200];
        assert_non_null(mkdtemp(out));
        tune_err err = {{0}};
        if (merge_lora(dir, adapters[k][0], out, 1LL << 30, &err))
            fail_msg("%s", err.msg);
        struct st_model merged;
        struct st_file golden;
        assert_int_equal(st_model_open(&merged, out, &err), 0);
        assert_int_equal(st_file_open(&golden, adapters[k][1], &err), 0);
        const struct st_tensor *t = st_model_find(&merged, adapters[k][2], NULL);
        snprintf(g, sizeof g, "merged.%s", adapters[k][2]);
        const struct st_tensor *want = st_file_find(&golden, g);
        assert_non_null(t);
        assert_non_null(want);
        assert_int_equal(t->nbytes, want->nbytes);
        double e = rel_l2(t->data, want->data, t->nbytes / 4);
        if (e > 1e-6)
            fail_msg("%s: relative error %.3g against PEFT's merge", adapters[k][2], e);
        st_file_close(&golden);
        st_model_close(&merged);
        remove_tree(out);
    }
}

/* The experts' LoRA merged into experts kept in MXFP4: every expert written
 * dequantized (in the model's float dtype, transformers' [E, in, out]), the
 * config without quantization_config; the merged model's loss is the base's
 * with the adapter applied (experts kept in MXFP4, LoRA on the side). */
static void test_merge_into_mxfp4(void **state)
{
    (void)state;
    const char *adapter = "tests/fixtures/tiny-gptoss/adapter_experts";
    const char *golden = "tests/fixtures/tiny-gptoss/golden_experts.safetensors";
    char out[] = "/tmp/tune-merge-mxfp4-XXXXXX";
    assert_non_null(mkdtemp(out));
    tune_err err = {{0}};
    if (merge_lora("tests/fixtures/tiny-gptoss-mxfp4", adapter, out, 1LL << 30, &err))
        fail_msg("%s", err.msg);
    struct fixture *with = fixture_open("tests/fixtures/tiny-gptoss-mxfp4", adapter, golden);
    struct fixture *merged = fixture_open(out, adapter, golden);
    assert_int_equal(with->rc.base_dtype, DTYPE_MXFP4);
    assert_int_equal(merged->rc.base_dtype, DTYPE_BF16); /* float experts now: no MXFP4 in the config */
    struct llama_batch b = golden_batch(with);
    double loss[2];
    struct fixture *f[2] = {with, merged};
    for (int k = 0; k < 2; k++) {
        struct run_config rc = f[k]->rc;
        rc.base_dtype = k ? DTYPE_F32 : DTYPE_MXFP4; /* the fixture's floats are fp32 */
        rc.seq = b.tokens;
        rc.micro_batch = 1;
        struct llama m;
        int64_t counted;
        if (k) { /* the merged weights alone: the adapter's initialisation leaves B zero */
            load_base(f[k], &m, &rc);
            llama_init_lora(&m);
        } else {
            load_model(f[k], &m, &rc);
        }
        if (llama_step(&m, &b, false, 0, 0, &loss[k], &counted, &err))
            fail_msg("%s", err.msg);
        llama_free(&m);
    }
    if (fabs(loss[1] - loss[0]) > 1e-5 * fabs(loss[0]))
        fail_msg("merged into MXFP4 experts: loss %.9g, base + adapter %.9g", loss[1], loss[0]);
    print_message("tests/fixtures/tiny-gptoss-mxfp4 + adapter_experts merged: loss sum %.7f, with the adapter %.7f\n",
                  loss[1], loss[0]);
    for (int k = 0; k < 2; k++) {
        st_file_close(&f[k]->golden);
        free(f[k]);
    }
    remove_tree(out);
}

/* A run of dir's fixture over layer 1 only, as `select` (run_parse_layers or
 * run_parse_expert_layers) reads "1", in *m with fresh LoRA factors, saved as
 * an adapter into the new folder `out` (a mkdtemp template) and read back
 * into *back (adapter_reloads). The caller frees m, removes out and closes f. */
static struct fixture *layer_one_saved(const char *dir, const char *adapter, const char *golden,
                                       int (*select)(struct run_config *, const struct model_spec *, const char *,
                                                     tune_err *),
                                       struct llama *m, char *out, struct run_config *back)
{
    struct fixture *f = fixture_open(dir, adapter, golden);
    tune_err err = {{0}};
    assert_int_equal(select(&f->rc, &f->spec, "1", &err), 0);
    f->rc.seq = 32;
    load_base(f, m, &f->rc);
    llama_init_lora(m);
    assert_non_null(mkdtemp(out));
    *back = adapter_reloads(f, m, out);
    return f;
}

/* dir's adapter_config.json into text[size] (NUL-terminated). */
static void read_adapter_config(const char *dir, char *text, size_t size)
{
    char path[512];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    size_t n = fread(text, 1, size - 1, fp);
    fclose(fp);
    text[n] = 0;
}

/* The OpenAI cookbook's shape of run: attention LoRA in every layer, the
 * experts' only in chosen ones (--expert-layers). Only those layers' experts
 * carry LoRA; the adapter names them as PEFT matches them ("1.mlp.experts.
 * gate_up_proj"), reads back to the same run and loads into it. */
static void test_expert_layers(void **state)
{
    (void)state;
    struct llama m;
    struct run_config back;
    char out[] = "/tmp/tune-expert-layers-XXXXXX", text[8192];
    struct fixture *f = layer_one_saved("tests/fixtures/tiny-gptoss", "tests/fixtures/tiny-gptoss/adapter_experts",
                                        "tests/fixtures/tiny-gptoss/golden_experts.safetensors",
                                        run_parse_expert_layers, &m, out, &back);
    for (int i = 0; i < LAYOUT_MAX_LINEARS && m.lin[i].module; i++) {
        bool expert = m.lin[i].component == COMPONENT_EXPERTS, attention = !strncmp(m.lin[i].module, "self_attn", 9);
        assert_true(m.layers[0].lora[i].on == attention);
        assert_true(m.layers[1].lora[i].on == (attention || expert));
    }
    assert_int_equal(back.targets, f->rc.targets);
    assert_true(back.expert_layers_chosen && back.expert_layer_selected[1] && !back.expert_layer_selected[0]);
    read_adapter_config(out, text, sizeof text);
    assert_non_null(strstr(text, "\"1.mlp.experts.gate_up_proj\""));
    assert_non_null(strstr(text, "\"1.mlp.experts.down_proj\""));
    assert_null(strstr(text, "\"0.mlp.experts"));
    llama_free(&m);
    remove_tree(out);
    st_file_close(&f->golden);
    free(f);
}

/* Replaces the first `from` in dir's adapter_config.json by `to`. */
static void edit_adapter_config(const char *dir, const char *from, const char *to)
{
    char path[512], text[8192], edited[8192];
    read_adapter_config(dir, text, sizeof text);
    char *at = strstr(text, from);
    assert_non_null(at);
    snprintf(edited, sizeof edited, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(edited, fp);
    fclose(fp);
}

/* --target-layers: the adapter says which layers in PEFT's
 * layers_to_transform, reads back to the same layers and loads; indices out
 * of the model and per-module rank patterns are refused, naming the file. */
static void test_target_layers_round_trip(void **state)
{
    (void)state;
    struct llama m;
    struct run_config back;
    char out[] = "/tmp/tune-target-layers-XXXXXX";
    struct fixture *f = layer_one_saved("tests/fixtures/tiny-llama", "tests/fixtures/tiny-llama/adapter",
                                        "tests/fixtures/tiny-llama/golden.safetensors", run_parse_layers, &m, out,
                                        &back);
    tune_err err = {{0}};
    assert_false(back.all_layers);
    assert_true(back.layer_selected[1] && !back.layer_selected[0]);
    llama_free(&m);
    /* PEFT also writes a single index */
    edit_adapter_config(out, "[1]", "1");
    run_config_default(&back, &f->spec);
    assert_int_equal(peft_read_config(out, &f->spec, &back, &err), 0);
    assert_true(!back.all_layers && back.layer_selected[1] && !back.layer_selected[0]);
    edit_adapter_config(out, "\"layers_to_transform\":\t1", "\"layers_to_transform\":\t[1, 7]");
    assert_int_equal(peft_read_config(out, &f->spec, &back, &err), -1);
    assert_non_null(strstr(err.msg, "adapter_config.json: layers_to_transform: expected layer indices in [0, 2)"));
    edit_adapter_config(out, "[1, 7]", "null");
    edit_adapter_config(out, "\"rank_pattern\":\t{", "\"rank_pattern\":\t{\"q_proj\": 8");
    assert_int_equal(peft_read_config(out, &f->spec, &back, &err), -1);
    assert_non_null(strstr(err.msg, "rank_pattern: per-module ranks"));
    remove_tree(out);
    st_file_close(&f->golden);
    free(f);
}

/* gpt-oss with its experts kept in MXFP4 computes what it does with them
 * dequantized at load (the dequantization is exact: base/mxfp4.h): the same
 * loss and the same gradients, bit for bit, in a fraction of the weights'
 * memory. tests/fixtures/tiny-gptoss-mxfp4 is tiny-gptoss with its experts
 * quantized; the experts adapter trains LoRA on them too. */
static void test_mxfp4_kept_equals_dequantized(void **state)
{
    (void)state;
    const char *dir = "tests/fixtures/tiny-gptoss-mxfp4";
    struct fixture *f = fixture_open(dir, "tests/fixtures/tiny-gptoss/adapter_experts",
                                     "tests/fixtures/tiny-gptoss/golden_experts.safetensors");
    assert_int_equal(f->rc.base_dtype, DTYPE_MXFP4); /* the default for an MXFP4 checkpoint */
    struct llama_batch b = golden_batch(f);
    f->rc.seq = b.tokens;
    f->rc.micro_batch = 1;
    double loss[2];
    int64_t weights[2], grad_bytes = 0;
    void *grads[2];
    const enum dtype base[2] = {DTYPE_MXFP4, DTYPE_BF16};
    for (int k = 0; k < 2; k++) {
        struct run_config rc = f->rc;
        rc.base_dtype = base[k];
        struct llama m;
        tune_err err = {{0}};
        load_model(f, &m, &rc);
        int64_t counted;
        llama_zero_grads(&m);
        if (llama_step(&m, &b, true, 0.125f, 3, &loss[k], &counted, &err))
            fail_msg("%s: %s", dir, err.msg);
        grad_bytes = m.plan.per_gpu[PLAN_GRADS];
        assert_non_null(grads[k] = malloc((size_t)grad_bytes));
        memcpy(grads[k], m.arena.block[PLAN_GRADS], (size_t)grad_bytes);
        weights[k] = m.plan.per_gpu[PLAN_WEIGHTS];
        llama_free(&m);
    }
    assert_true(loss[0] == loss[1]);
    assert_memory_equal(grads[0], grads[1], (size_t)grad_bytes);
    assert_true(weights[0] < weights[1]);
    print_message("%s: loss %.7f kept in MXFP4 and dequantized, gradients equal; weights %lld vs %lld bytes\n", dir,
                  loss[0] / (double)b.tokens, (long long)weights[0], (long long)weights[1]);
    free(grads[0]);
    free(grads[1]);
    st_file_close(&f->golden);
    free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FIXTURE_TESTS("tests/fixtures/tiny-llama"),
        FIXTURE_TESTS("tests/fixtures/tiny-qwen2"),
        GPT_OSS_TESTS("tests/fixtures/tiny-gptoss"),
        cmocka_unit_test_prestate_setup_teardown(test_peft_roundtrip_logits, setup_roundtrip, teardown,
                                                 (void *)roundtrip_llama),
        cmocka_unit_test_prestate_setup_teardown(test_peft_roundtrip_logits, setup_roundtrip, teardown,
                                                 (void *)roundtrip_gptoss),
        cmocka_unit_test(test_mxfp4_kept_equals_dequantized),
        cmocka_unit_test(test_expert_layers),
        cmocka_unit_test(test_merge_gptoss),
        cmocka_unit_test(test_merge_into_mxfp4),
        cmocka_unit_test(test_target_layers_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
