/* The CUDA backend: creation, memory, error state and the op table. Memory
 * ops are plain cudaMalloc / cudaFree and copies on the backend's stream;
 * upload and download wait for the stream, so a host buffer may be reused as
 * soon as they return and a download sees every op issued before it. The
 * backend keeps a list of its live blocks and their sizes (a handful: the
 * plan allocates one block per category) so that bytes_in_use and
 * bytes_peak count alloc minus free, as backend.h asks; the fixed workspace
 * is not in them (backend_cuda_workspace_bytes). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_ops.cuh"

void cuda_record_error(struct cuda_backend *cb, const char *statement, const char *why, const char *func,
                       const char *file, int line)
{
    if (cb->failed)
        return;
    cb->failed = 1;
    snprintf(cb->error, sizeof cb->error, "%s failed: %s (in %s at %s:%d, device %d)", statement, why, func, file,
             line, cb->device);
}

/* NULL on failure (the caller names the plan category); a request of 0 bytes
 * still gets a block, so NULL always means out of memory. An allocation that
 * fails leaves no error behind: cudaMalloc's is not sticky and is cleared. */
static void *cuda_alloc(struct backend *b, size_t bytes)
{
    struct cuda_backend *cb = cuda_of(b);
    if (cb->n_blocks == cb->cap_blocks) {
        int cap = cb->cap_blocks ? 2 * cb->cap_blocks : 64;
        struct cuda_block *grown = (struct cuda_block *)realloc(cb->blocks, sizeof *grown * (size_t)cap);
        if (!grown)
            return NULL;
        cb->blocks = grown;
        cb->cap_blocks = cap;
    }
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 256) != cudaSuccess) {
        (void)cudaGetLastError();
        return NULL;
    }
    cb->blocks[cb->n_blocks].p = p;
    cb->blocks[cb->n_blocks++].bytes = bytes;
    b->bytes_in_use += (int64_t)bytes;
    if (b->bytes_in_use > b->bytes_peak)
        b->bytes_peak = b->bytes_in_use;
    return p;
}

/* Frees a block of alloc's; waits for the device first (cudaFree does). */
static void cuda_free(struct backend *b, void *p)
{
    struct cuda_backend *cb = cuda_of(b);
    if (!p)
        return;
    int i = cb->n_blocks - 1;
    while (i >= 0 && cb->blocks[i].p != p)
        i--;
    assert(i >= 0 && "cuda free: not a block of this backend's alloc");
    if (i < 0)
        return;
    b->bytes_in_use -= (int64_t)cb->blocks[i].bytes;
    cb->blocks[i] = cb->blocks[--cb->n_blocks];
    CUDA_CHECK(cb, cudaFree(p));
}

static void cuda_upload(struct backend *b, void *dst, const void *host, size_t bytes)
{
    struct cuda_backend *cb = cuda_of(b);
    if (!bytes)
        return;
    CUDA_CHECK(cb, cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, cb->stream));
    CUDA_CHECK(cb, cudaStreamSynchronize(cb->stream));
}

static void cuda_download(struct backend *b, void *host, const void *src, size_t bytes)
{
    struct cuda_backend *cb = cuda_of(b);
    if (!bytes)
        return;
    CUDA_CHECK(cb, cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, cb->stream));
    CUDA_CHECK(cb, cudaStreamSynchronize(cb->stream));
}

static void *cuda_alloc_host(struct backend *b, size_t bytes)
{
    void *p = NULL;
    (void)b;
    return cudaHostAlloc(&p, bytes, cudaHostAllocDefault) == cudaSuccess ? p : NULL;
}

static void cuda_free_host(struct backend *b, void *p)
{
    (void)b;
    cudaFreeHost(p);
}

static void cuda_copy(struct backend *b, void *dst, const void *src, size_t bytes)
{
    struct cuda_backend *cb = cuda_of(b);
    if (bytes)
        CUDA_CHECK(cb, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, cb->stream));
}

static void cuda_zero(struct backend *b, struct tensor *t)
{
    struct cuda_backend *cb = cuda_of(b);
    size_t bytes = (size_t)dtype_bytes(t->dtype, tensor_numel(t));
    if (bytes)
        CUDA_CHECK(cb, cudaMemsetAsync(t->data, 0, bytes, cb->stream));
}

/* Graphs: stream capture of the backend's stream (thread-local mode: no other thread's CUDA calls are
 * affected), instantiated once and launched on that stream. */
static void cuda_capture_begin(struct backend *b)
{
    struct cuda_backend *cb = cuda_of(b);
    CUDA_CHECK(cb, cudaStreamBeginCapture(cb->stream, cudaStreamCaptureModeThreadLocal));
}

static void *cuda_capture_end(struct backend *b)
{
    struct cuda_backend *cb = cuda_of(b);
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    CUDA_CHECK(cb, cudaStreamEndCapture(cb->stream, &graph));
    if (graph) {
        CUDA_CHECK(cb, cudaGraphInstantiate(&exec, graph, 0));
        cudaGraphDestroy(graph);
    }
    return cb->failed ? NULL : exec;
}

static void cuda_graph_run(struct backend *b, void *graph)
{
    struct cuda_backend *cb = cuda_of(b);
    CUDA_CHECK(cb, cudaGraphLaunch((cudaGraphExec_t)graph, cb->stream));
}

static void cuda_graph_free(struct backend *b, void *graph)
{
    struct cuda_backend *cb = cuda_of(b);
    if (graph)
        CUDA_CHECK(cb, cudaGraphExecDestroy((cudaGraphExec_t)graph));
}

static const struct backend cuda_table = {
    .name = "cuda",
    .bytes_in_use = 0,
    .bytes_peak = 0,
    .check = backend_cuda_check,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .upload = cuda_upload,
    .download = cuda_download,
    .alloc_host = cuda_alloc_host,
    .free_host = cuda_free_host,
    .copy = cuda_copy,
    .zero = cuda_zero,
    .convert = cuda_convert,
    .matmul = cuda_matmul,
    .matmul_add = cuda_matmul_add,
    .add_bias = cuda_add_bias,
    .bias_backward = cuda_bias_backward,
    .axpy = cuda_axpy,
    .embedding = cuda_embedding,
    .embedding_backward = cuda_embedding_backward,
    .rmsnorm = cuda_rmsnorm,
    .rmsnorm_backward = cuda_rmsnorm_backward,
    .rope = cuda_rope,
    .attention = cuda_attention,
    .attention_backward = cuda_attention_backward,
    .attention_cached = cuda_attention_cached,
    .swiglu = cuda_swiglu,
    .swiglu_backward = cuda_swiglu_backward,
    /* Mixture of experts (moe.cu; the grouped GEMMs moe_matmul.cu). */
    .moe_topk = cuda_moe_topk,
    .moe_topk_backward = cuda_moe_topk_backward,
    .moe_group = cuda_moe_group,
    .moe_gather = cuda_moe_gather,
    .moe_scatter = cuda_moe_scatter,
    .moe_weights_backward = cuda_moe_weights_backward,
    .moe_matmul = cuda_moe_matmul,
    .moe_weight_grad = cuda_moe_weight_grad,
    .swiglu_oai = cuda_swiglu_oai,
    .swiglu_oai_backward = cuda_swiglu_oai_backward,
    .cross_entropy = cuda_cross_entropy,
    .cross_entropy_backward = cuda_cross_entropy_backward,
    .dropout = cuda_dropout,
    .adamw = cuda_adamw,
    .sum_squares = cuda_sum_squares,
    .scale = cuda_scale,
    .capture_begin = cuda_capture_begin,
    .capture_end = cuda_capture_end,
    .graph_run = cuda_graph_run,
    .graph_free = cuda_graph_free,
};

/* Fills err from a creation step that failed and undoes the steps before. */
static struct backend *creation_failed(struct cuda_backend *cb, const char *what, const char *why, tune_err *err)
{
    err_set(err, "CUDA device %d: %s failed: %s", cb->device, what, why);
    backend_cuda_free(&cb->base);
    return NULL;
}

extern "C" struct backend *backend_cuda_with_scratch(int device, size_t convert_scratch_bytes, tune_err *err)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        err_set(err, "CUDA: no usable device: %s", cudaGetErrorString(e));
        return NULL;
    }
    if (device < 0 || device >= count) {
        err_set(err, "CUDA: device %d asked for, %d present", device, count);
        return NULL;
    }
    if (convert_scratch_bytes < 4096) {
        err_set(err, "CUDA: conversion scratch of %zu bytes is under 4096", convert_scratch_bytes);
        return NULL;
    }
    struct cuda_backend *cb = (struct cuda_backend *)calloc(1, sizeof *cb);
    if (!cb) {
        err_set(err, "CUDA: out of host memory for the backend");
        return NULL;
    }
    cb->base = cuda_table;
    cb->device = device;
    cb->lt_workspace_bytes = CUDA_LT_WORKSPACE_BYTES;
    cb->convert_bytes = convert_scratch_bytes / 512 * 512; /* two halves, each 256-byte aligned */
    cb->reduce_bytes = CUDA_REDUCE_SCRATCH_BYTES;
    if ((e = cudaSetDevice(device)) != cudaSuccess)
        return creation_failed(cb, "cudaSetDevice", cudaGetErrorString(e), err);
    if ((e = cudaStreamCreate(&cb->stream)) != cudaSuccess)
        return creation_failed(cb, "cudaStreamCreate", cudaGetErrorString(e), err);
    cublasStatus_t s = cublasLtCreate(&cb->lt);
    if (s != CUBLAS_STATUS_SUCCESS)
        return creation_failed(cb, "cublasLtCreate", cublasLtGetStatusString(s), err);
    if ((e = cudaMalloc(&cb->lt_workspace, cb->lt_workspace_bytes)) != cudaSuccess ||
        (e = cudaMalloc(&cb->convert, cb->convert_bytes)) != cudaSuccess ||
        (e = cudaMalloc(&cb->reduce, cb->reduce_bytes)) != cudaSuccess) {
        (void)cudaGetLastError();
        return creation_failed(cb, "cudaMalloc of the workspace", cudaGetErrorString(e), err);
    }
    return &cb->base;
}

extern "C" struct backend *backend_cuda(int device, tune_err *err)
{
    return backend_cuda_with_scratch(device, CUDA_CONVERT_SCRATCH_BYTES, err);
}

extern "C" void backend_cuda_free(struct backend *b)
{
    if (!b)
        return;
    struct cuda_backend *cb = cuda_of(b);
    if (cb->stream)
        (void)cudaStreamSynchronize(cb->stream);
    cudaFree(cb->lt_workspace);
    cudaFree(cb->convert);
    cudaFree(cb->reduce);
    cuda_lt_plans_free(cb);
    if (cb->lt)
        cublasLtDestroy(cb->lt);
    if (cb->stream)
        cudaStreamDestroy(cb->stream);
    free(cb->blocks);
    free(cb);
}

extern "C" int backend_cuda_check(struct backend *b, tune_err *err)
{
    struct cuda_backend *cb = cuda_of(b);
    CUDA_CHECK(cb, cudaStreamSynchronize(cb->stream));
    CUDA_CHECK(cb, cudaGetLastError());
    if (!cb->failed)
        return 0;
    return err_set(err, "%s", cb->error);
}

extern "C" size_t backend_cuda_workspace_bytes(const struct backend *b)
{
    const struct cuda_backend *cb = (const struct cuda_backend *)b;
    return cb->lt_workspace_bytes + cb->convert_bytes + cb->reduce_bytes;
}

extern "C" int backend_cuda_device_count(void)
{
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return count;
}

extern "C" void backend_cuda_device_info(const struct backend *b, char *name, size_t name_size, size_t *used,
                                         size_t *total)
{
    const struct cuda_backend *cb = (const struct cuda_backend *)b;
    cudaDeviceProp prop{};
    size_t free_bytes = 0, all = 0;
    if (cudaGetDeviceProperties(&prop, cb->device) != cudaSuccess || cudaMemGetInfo(&free_bytes, &all) != cudaSuccess)
        (void)cudaGetLastError();
    snprintf(name, name_size, "%s", prop.name);
    *used = all - free_bytes;
    *total = all;
}
