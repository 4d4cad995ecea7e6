/* The exact plan: its totals are the sum of its buffers, sharding and
 * checkpointing move the bytes they should, the fit search agrees with the
 * plan, and the gpt-oss-120b verdicts of issue 3 hold. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "plan/fit.h"
#include "plan/hardware.h"
#include "plan/memplan.h"

static struct model_spec spec_of(const char *name)
{
    struct model_spec s;
    tune_err err = {{0}};
    assert_int_equal(spec_resolve(&s, name, &err), 0);
    return s;
}

static int64_t total_of(const struct model_spec *s, const struct run_config *rc, struct mem_plan *out)
{
    struct mem_plan p;
    tune_err err = {{0}};
    if (plan_build(&p, s, rc, &err))
        fail_msg("plan_build: %s", err.msg);
    int64_t t = p.total;
    if (out)
        *out = p;
    else
        plan_free(&p);
    return t;
}

static const struct plan_buffer *find(const struct mem_plan *p, const char *name)
{
    for (int i = 0; i < p->n; i++)
        if (!strcmp(p->buf[i].name, name))
            return &p->buf[i];
    fail_msg("no buffer %s", name);
    return NULL;
}

static void test_totals_are_sums(void **state)
{
    (void)state;
    struct model_spec s = spec_of("llama-3.1-8b");
    struct run_config rc;
    run_config_default(&rc, &s);
    struct mem_plan p;
    total_of(&s, &rc, &p);
    int64_t cat[PLAN_CATEGORY_COUNT] = {0}, sum = 0, host = 0;
    for (int i = 0; i < p.n; i++) {
        assert_int_equal(p.buf[i].bytes % PLAN_ALIGN, 0);
        if (p.buf[i].on_host)
            host += p.buf[i].bytes;
        else
            cat[p.buf[i].category] += p.buf[i].bytes;
    }
    for (int c = 0; c < PLAN_CATEGORY_COUNT; c++) {
        assert_int_equal(cat[c], p.per_gpu[c]);
        sum += cat[c];
    }
    assert_int_equal(sum, p.total);
    assert_int_equal(host, p.host_bytes);
    /* bf16 weights of an 8B model: 2 bytes a parameter, norms and all, beside
     * the fp32 rotary table of seq x head_dim; the frozen input embedding
     * (128256 x 4096, not tied) in host memory, with the page-locked rows a
     * step gathers from it (seq x hidden, bf16). */
    int64_t rope = find(&p, "rope.cos_sin")->bytes, embed = 2 * 128256LL * 4096;
    assert_int_equal(rope, 2048 * 128 * 4);
    assert_true(find(&p, "embed_tokens.weight")->on_host && find(&p, "embed_tokens.rows")->on_host);
    assert_int_equal(p.host_bytes, embed + 2 * 2048 * 4096);
    assert_true(p.per_gpu[PLAN_WEIGHTS] - rope >= 2 * 8030261248LL - embed);
    assert_true(p.per_gpu[PLAN_WEIGHTS] - rope < 2 * 8030261248LL - embed + (1 << 20));
    /* LoRA r16 on q,k,v,o of llama-3.1-8b: 16 * (4096+4096 + 2*(4096+1024) + 4096+4096) * 32. */
    assert_int_equal(p.trainable_params, 16LL * (8192 * 2 + 2 * 5120) * 32);
    assert_int_equal(find(&p, "layers.*.self_attn.q_proj.lora_A")->elems, 16 * 4096);
    plan_free(&p);
}

static void test_checkpointing_and_tokens(void **state)
{
    (void)state;
    struct model_spec s = spec_of("llama-3.1-8b");
    struct run_config rc;
    run_config_default(&rc, &s);
    struct mem_plan none, full;
    total_of(&s, &rc, &none);
    rc.grad_ckpt = GRAD_CKPT_FULL;
    total_of(&s, &rc, &full);
    /* Full checkpointing keeps one [T, C] bf16 input per layer plus one
     * layer's working set: about 9x less than keeping every layer's here. */
    assert_true(full.per_gpu[PLAN_ACTIVATIONS] * 8 < none.per_gpu[PLAN_ACTIVATIONS]);
    assert_int_equal(full.per_gpu[PLAN_WEIGHTS], none.per_gpu[PLAN_WEIGHTS]);
    /* Activations scale with tokens: twice the micro-batch, twice the bytes (within alignment). */
    rc.grad_ckpt = GRAD_CKPT_NONE;
    rc.micro_batch = 2;
    struct mem_plan two;
    total_of(&s, &rc, &two);
    int64_t diff = two.per_gpu[PLAN_ACTIVATIONS] - 2 * none.per_gpu[PLAN_ACTIVATIONS];
    assert_true(diff > -(1 << 20) && diff < (1 << 20));
    plan_free(&none);
    plan_free(&full);
    plan_free(&two);
}

static void test_zero_sharding(void **state)
{
    (void)state;
    struct model_spec s = spec_of("llama-2-7b");
    struct run_config rc;
    run_config_default(&rc, &s);
    rc.method = METHOD_FULL;
    rc.targets = 0;
    rc.gpus = 8;
    struct mem_plan z[4];
    for (int stage = 0; stage < 4; stage++) {
        rc.zero = stage;
        total_of(&s, &rc, &z[stage]);
    }
    /* ZeRO-1 shards the optimizer (and the fp32 masters), ZeRO-2 also the
     * grads, ZeRO-3 also the weights. */
    assert_true(z[1].per_gpu[PLAN_OPTIMIZER] * 7 < z[0].per_gpu[PLAN_OPTIMIZER]);
    assert_int_equal(z[1].per_gpu[PLAN_GRADS], z[0].per_gpu[PLAN_GRADS]);
    assert_true(z[2].per_gpu[PLAN_GRADS] * 7 < z[1].per_gpu[PLAN_GRADS]);
    assert_int_equal(z[2].per_gpu[PLAN_WEIGHTS], z[1].per_gpu[PLAN_WEIGHTS]);
    assert_true(z[3].per_gpu[PLAN_WEIGHTS] * 7 < z[2].per_gpu[PLAN_WEIGHTS]);
    assert_true(z[0].total > z[1].total && z[1].total > z[2].total && z[2].total > z[3].total);
    /* Full fine-tuning trains every parameter, embeddings and norms included. */
    assert_int_equal(z[0].trainable_params, 6738415616LL);
    for (int stage = 0; stage < 4; stage++)
        plan_free(&z[stage]);
}

/* Issue 3: gpt-oss-120b LoRA fits an H100 80GB with its MXFP4 experts and does
 * not with them dequantized to bf16. */
static void test_gpt_oss_120b_on_h100(void **state)
{
    (void)state;
    struct model_spec s = spec_of("gpt-oss-120b");
    struct run_config rc;
    run_config_default(&rc, &s);
    assert_int_equal(rc.base_dtype, DTYPE_MXFP4);
    int64_t usable = hw_gpu_usable_bytes(hw_gpu_lookup("h100-80"));
    struct mem_plan p;
    total_of(&s, &rc, &p);
    assert_true(p.total <= usable);
    /* MXFP4 experts: 4.25 bits a weight, blocks + scales as the checkpoint stores them. */
    const struct plan_buffer *blocks = find(&p, "layers.*.mlp.experts.gate_up_proj.weight_blocks");
    assert_int_equal(blocks->bytes, 36LL * 128 * 2880 * 5760 / 2);
    const struct plan_buffer *scales = find(&p, "layers.*.mlp.experts.gate_up_proj.weight_scales");
    assert_int_equal(scales->bytes, 36LL * 128 * 2880 * 5760 / 32);
    plan_free(&p);
    rc.base_dtype = DTYPE_BF16;
    assert_true(total_of(&s, &rc, NULL) > usable);
}

static void test_qlora_and_offload(void **state)
{
    (void)state;
    struct model_spec s = spec_of("llama-3.1-8b");
    struct run_config rc;
    run_config_default(&rc, &s);
    struct mem_plan bf16, nf4;
    total_of(&s, &rc, &bf16);
    rc.method = METHOD_QLORA;
    rc.base_dtype = DTYPE_NF4;
    total_of(&s, &rc, &nf4);
    /* NF4 with double quantization: ~4.13 bits for the layer linears; the
     * embedding and head stay bf16. */
    assert_true(nf4.per_gpu[PLAN_WEIGHTS] < bf16.per_gpu[PLAN_WEIGHTS] / 2);
    plan_free(&bf16);
    plan_free(&nf4);

    s = spec_of("llama-2-70b");
    run_config_default(&rc, &s);
    rc.method = METHOD_FULL;
    rc.targets = 0;
    rc.gpus = 8;
    rc.zero = 3;
    struct mem_plan on, off;
    total_of(&s, &rc, &on);
    rc.offload = OFFLOAD_OPTIMIZER;
    total_of(&s, &rc, &off);
    assert_int_equal(off.per_gpu[PLAN_OPTIMIZER], 0);
    assert_int_equal(off.host_bytes, on.per_gpu[PLAN_OPTIMIZER] + on.per_gpu[PLAN_TRAINABLE]);
    plan_free(&on);
    plan_free(&off);
}

static void test_layer_placement(void **state)
{
    (void)state;
    struct model_spec s = spec_of("llama-2-70b");
    struct run_config rc;
    run_config_default(&rc, &s);
    struct mem_plan one, four;
    total_of(&s, &rc, &one);
    rc.gpus = 4;
    rc.place_layers = true;
    total_of(&s, &rc, &four);
    /* 80 layers over 4 GPUs: 20 each, plus the head on the last (the embedding is in host memory). */
    int64_t layer = (one.per_gpu[PLAN_WEIGHTS] - 32000LL * 8192 * 2) / 80;
    assert_true(four.per_gpu[PLAN_WEIGHTS] < 20 * layer + 32000LL * 8192 * 2 + (1 << 20));
    assert_true(four.per_gpu[PLAN_WEIGHTS] > 20 * layer);
    plan_free(&one);
    plan_free(&four);
}

static void test_fit_search(void **state)
{
    (void)state;
    struct model_spec s = spec_of("llama-3.1-8b");
    struct run_config rc;
    run_config_default(&rc, &s);
    rc.method = METHOD_QLORA;
    rc.base_dtype = DTYPE_NF4;
    int64_t usable = hw_gpu_usable_bytes(hw_gpu_lookup("rtx4090-24"));
    struct fit_result f;
    fit_find(&s, &rc, usable, &f);
    assert_true(f.max_micro_batch >= 1 && f.max_seq >= 2048);
    /* The answer is tight: it fits, one more does not. */
    struct run_config probe = rc;
    probe.micro_batch = f.max_micro_batch;
    assert_true(fit_plan_total(&s, &probe) <= usable);
    probe.micro_batch++;
    assert_true(fit_plan_total(&s, &probe) > usable);
    probe = rc;
    probe.seq = f.max_seq;
    assert_true(fit_plan_total(&s, &probe) <= usable);
    probe.seq++;
    assert_true(fit_plan_total(&s, &probe) > usable);
    assert_int_equal(f.max_ckpt_keep, -1); /* no full checkpointing asked */
    /* With it, the layers kept out of the recompute: as many as fit, one more does not. */
    rc.grad_ckpt = GRAD_CKPT_FULL;
    fit_find(&s, &rc, usable, &f);
    assert_true(f.max_ckpt_keep > 0 && f.max_ckpt_keep < s.layers);
    probe = rc;
    probe.ckpt_keep_layers = f.max_ckpt_keep;
    assert_true(fit_plan_total(&s, &probe) <= usable);
    probe.ckpt_keep_layers++;
    assert_true(probe.ckpt_keep_layers == s.layers || fit_plan_total(&s, &probe) > usable);
}

static void test_invalid_runs(void **state)
{
    (void)state;
    struct model_spec s = spec_of("llama-3.1-8b");
    struct run_config rc;
    run_config_default(&rc, &s);
    tune_err err = {{0}};
    rc.zero = 2;
    struct mem_plan p;
    assert_int_equal(plan_build(&p, &s, &rc, &err), -1);
    assert_non_null(strstr(err.msg, "--gpus"));
    run_config_default(&rc, &s);
    rc.base_dtype = DTYPE_MXFP4;
    assert_int_equal(plan_build(&p, &s, &rc, &err), -1);
    assert_non_null(strstr(err.msg, "mxfp4"));
    assert_int_equal(run_parse_targets(&rc, &s, "q,gate_up", &err), -1);
    assert_non_null(strstr(err.msg, "gate_up"));
    assert_int_equal(run_parse_targets(&rc, &s, "q_proj,v_proj,all-linear", &err), 0);
    assert_int_equal(rc.targets, 0x7f);
    /* gpt-oss: PEFT's all-linear is q, k, v, o; its down is the experts' parameter */
    s = spec_of("gpt-oss-20b");
    assert_int_equal(run_parse_targets(&rc, &s, "all-linear", &err), 0);
    assert_int_equal(rc.targets, 1u << TARGET_Q | 1u << TARGET_K | 1u << TARGET_V | 1u << TARGET_O);
    /* the experts' LoRA in chosen layers needs an expert target, and a model with experts */
    assert_int_equal(run_parse_expert_layers(&rc, &s, "7", &err), 0);
    assert_int_equal(plan_build(&p, &s, &rc, &err), -1);
    assert_non_null(strstr(err.msg, "experts to --targets"));
    assert_int_equal(run_parse_expert_layers(&rc, &s, "24", &err), -1);
    struct model_spec dense = spec_of("llama-3.1-8b");
    assert_int_equal(run_parse_expert_layers(&rc, &dense, "7", &err), -1);
}

/* The OpenAI cookbook's gpt-oss-20b LoRA: r8 on q, k, v, o of every layer and
 * on the experts of layers 7, 15 and 23 only. */
static void test_expert_layers(void **state)
{
    (void)state;
    struct model_spec s = spec_of("gpt-oss-20b");
    struct run_config rc;
    run_config_default(&rc, &s);
    tune_err err = {{0}};
    rc.lora_r = 8;
    assert_int_equal(run_parse_targets(&rc, &s, "all-linear,experts", &err), 0);
    assert_int_equal(run_parse_expert_layers(&rc, &s, "7,15,23", &err), 0);
    struct mem_plan p;
    total_of(&s, &rc, &p);
    int64_t C = 2880, I = 2880, E = 32, q = 64 * 64, kv = 8 * 64;
    int64_t attention = 8 * ((C + q) + 2 * (C + kv) + (q + C)), experts = E * 8 * ((C + 2 * I) + (I + C));
    assert_int_equal(p.trainable_params, 24 * attention + 3 * experts);
    assert_true(run_layer_targeted(&rc, 7, "gate_up") && run_layer_targeted(&rc, 23, "down"));
    assert_false(run_layer_targeted(&rc, 8, "gate_up") || run_layer_targeted(&rc, 8, "down"));
    assert_true(run_layer_targeted(&rc, 8, "q"));
    plan_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_totals_are_sums),    cmocka_unit_test(test_checkpointing_and_tokens),
        cmocka_unit_test(test_zero_sharding),      cmocka_unit_test(test_gpt_oss_120b_on_h100),
        cmocka_unit_test(test_qlora_and_offload),  cmocka_unit_test(test_layer_placement),
        cmocka_unit_test(test_fit_search),         cmocka_unit_test(test_invalid_runs),
        cmocka_unit_test(test_expert_layers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
