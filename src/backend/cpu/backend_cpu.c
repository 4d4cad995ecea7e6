/* The CPU reference backend: the op table and its memory, which is plain host
 * memory, so upload and download are copies. Blocks are 64-byte aligned (a
 * cache line, and enough for any vector load OpenBLAS makes); each carries
 * its size in a header of one alignment unit, so the backend can count the
 * bytes it holds (what `tune train` compares with the plan). */
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_ops.h"

#define CPU_ALIGN 64

/* NULL on failure; a request of 0 bytes still gets a block, so NULL always
 * means out of memory. */
static void *cpu_alloc(struct backend *b, size_t bytes)
{
    if (bytes > SIZE_MAX - 2 * CPU_ALIGN)
        return NULL;
    size_t rounded = bytes ? (bytes + CPU_ALIGN - 1) / CPU_ALIGN * CPU_ALIGN : CPU_ALIGN;
    char *p = aligned_alloc(CPU_ALIGN, rounded + CPU_ALIGN);
    if (!p)
        return NULL;
    memcpy(p, &bytes, sizeof bytes);
    b->bytes_in_use += (int64_t)bytes;
    if (b->bytes_in_use > b->bytes_peak)
        b->bytes_peak = b->bytes_in_use;
    return p + CPU_ALIGN;
}

static void cpu_free(struct backend *b, void *p)
{
    if (!p)
        return;
    char *block = (char *)p - CPU_ALIGN;
    size_t bytes;
    memcpy(&bytes, block, sizeof bytes);
    b->bytes_in_use -= (int64_t)bytes;
    free(block);
}

static void cpu_upload(struct backend *b, void *dst, const void *host, size_t bytes)
{
    (void)b;
    memcpy(dst, host, bytes);
}

static void cpu_download(struct backend *b, void *host, const void *src, size_t bytes)
{
    (void)b;
    memcpy(host, src, bytes);
}

static void cpu_zero(struct backend *b, struct tensor *t)
{
    (void)b;
    memset(t->data, 0, (size_t)dtype_bytes(t->dtype, tensor_numel(t)));
}

static struct backend cpu_backend = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_upload,
    .download = cpu_download,
    .copy = cpu_upload,
    .zero = cpu_zero,
    .convert = cpu_convert,
    .matmul = cpu_matmul,
    .matmul_add = cpu_matmul_add,
    .add_bias = cpu_add_bias,
    .bias_backward = cpu_bias_backward,
    .axpy = cpu_axpy,
    .embedding = cpu_embedding,
    .embedding_backward = cpu_embedding_backward,
    .rmsnorm = cpu_rmsnorm,
    .rmsnorm_backward = cpu_rmsnorm_backward,
    .rope = cpu_rope,
    .attention = cpu_attention,
    .attention_backward = cpu_attention_backward,
    .attention_cached = cpu_attention_cached,
    .swiglu = cpu_swiglu,
    .swiglu_backward = cpu_swiglu_backward,
    .moe_topk = cpu_moe_topk,
    .moe_topk_backward = cpu_moe_topk_backward,
    .moe_group = cpu_moe_group,
    .moe_gather = cpu_moe_gather,
    .moe_scatter = cpu_moe_scatter,
    .moe_weights_backward = cpu_moe_weights_backward,
    .moe_matmul = cpu_moe_matmul,
    .moe_weight_grad = cpu_moe_weight_grad,
    .swiglu_oai = cpu_swiglu_oai,
    .swiglu_oai_backward = cpu_swiglu_oai_backward,
    .cross_entropy = cpu_cross_entropy,
    .cross_entropy_backward = cpu_cross_entropy_backward,
    .dropout = cpu_dropout,
    .adamw = cpu_adamw,
    .sum_squares = cpu_sum_squares,
    .scale = cpu_scale,
};

struct backend *backend_cpu(void) { return &cpu_backend; }
