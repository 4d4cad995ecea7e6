/* tune inspect PATH: what tune makes of a preset, a model folder, a safetensors file or a
 * dataset, before anything is trained.
 *   preset / config.json   the spec and its parameter count per component, counted as
 *                          transformers counts them
 *   model folder           the same, then its weights (tensors, dtypes, bytes, shards) checked
 *                          tensor by tensor against the spec (Llama family: the names and
 *                          shapes model/llama_load.c reads), and its tokenizer.json
 *   .safetensors / index   every tensor (name, dtype, shape) and the __metadata__
 *   dataset (.json array,  records per shape and, given a tokenizer (--tokenizer or --model),
 *   .jsonl, a directory)   the token length of each example as training builds it
 * What to inspect is decided by what PATH is, not by a flag: a folder with config.json is a
 * model, a .json file starting with '{' is a config, with '[' a dataset. A model whose weights
 * would not load (a tensor missing, of another shape or dtype) or whose tokenizer has ids
 * beyond the embedding exits 1 after the full report. */
#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/str.h"
#include "base/units.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/data_setup.h"
#include "cli/model_files.h"
#include "data/dataset.h"
#include "data/source.h"
#include "data/template.h"
#include "io/safetensors.h"
#include "model/layout.h"
#include "model/spec.h"

enum {
    OPT_PATH, OPT_CONFIG, OPT_TENSORS, OPT_TOKENIZER, OPT_MODEL, OPT_TEMPLATE, OPT_CHAT,
    OPT_MAX_LENGTH, OPT_HELP, OPT_COUNT
};

static const struct cli_opt inspect_opts[] = {
    [OPT_PATH] = {"", NULL, "PATH: a preset name, a model folder, a .safetensors file (or an "
                            "index), or a dataset (.json, .jsonl or a directory of them)"},
    [OPT_CONFIG] = {"--config", NULL, "print the preset's config.json instead (to start a model "
                                      "folder from)"},
    [OPT_TENSORS] = {"--tensors", NULL, "model folder: also list every tensor"},
    [OPT_TOKENIZER] = {"--tokenizer", "FILE", "dataset: count tokens with this tokenizer.json"},
    [OPT_MODEL] = {"--model", "DIR", "dataset: count tokens as training this model would (its "
                                     "tokenizer, EOS and chat format)"},
    [OPT_TEMPLATE] = {"--template", "FILE", "dataset: build prompt and completion from each "
                                            "record's fields (src/data/template.h)"},
    [OPT_CHAT] = {"--chat-format", "F", "dataset: render \"messages\" records: harmony, llama3, "
                                        "chatml or mistral"},
    [OPT_MAX_LENGTH] = {"--max-length", "N", "dataset: also count the examples longer than N "
                                             "tokens"},
    [OPT_HELP] = {"--help", NULL, "show this help"},
};
_Static_assert(sizeof inspect_opts / sizeof inspect_opts[0] == OPT_COUNT, "inspect options");

struct inspect_args {
    const char *v[OPT_COUNT]; /* the value of each option given; "" for a switch */
    int64_t max_length;
};

/* How many entries of a list the report shows before "... and N more". */
#define SHOW_MAX 10

static void print_presets(FILE *out)
{
    fprintf(out, "presets:");
    for (int i = 0; i < spec_preset_count(); i++)
        fprintf(out, " %s", spec_preset_name(i));
    fprintf(out, "\n");
}

static void print_spec(const struct model_spec *s)
{
    char buf[64];
    printf("model          %s\n", s->name);
    printf("architecture   %s\n", spec_arch_name(s->arch));
    printf("vocab          %lld\n", (long long)s->vocab);
    printf("hidden         %lld\n", (long long)s->hidden);
    printf("layers         %lld\n", (long long)s->layers);
    printf("heads          %lld query, %lld key/value, head_dim %lld\n", (long long)s->heads,
           (long long)s->kv_heads, (long long)s->head_dim);
    if (s->experts)
        printf("experts        %lld, top-%lld per token, each %lld wide, SwiGLU clamp %g, experts %s\n",
               (long long)s->experts, (long long)s->experts_per_token, (long long)s->intermediate,
               s->swiglu_limit, s->expert_quant == WEIGHT_QUANT_MXFP4 ? "MXFP4" : "unquantized");
    else
        printf("mlp            SwiGLU, %lld wide\n", (long long)s->intermediate);
    printf("rope           %s, theta %g", spec_rope_name(s->rope.type), s->rope.theta);
    if (s->rope.type != ROPE_TYPE_DEFAULT)
        printf(", factor %g", s->rope.factor);
    if (s->rope.type == ROPE_TYPE_LLAMA3)
        printf(", low/high freq %g/%g", s->rope.low_freq_factor, s->rope.high_freq_factor);
    if (s->rope.type == ROPE_TYPE_YARN)
        printf(", beta fast/slow %g/%g, truncate %s", s->rope.beta_fast, s->rope.beta_slow,
               s->rope.truncate ? "yes" : "no");
    if (s->rope.original_max_position)
        printf(", original context %lld", (long long)s->rope.original_max_position);
    printf("\ncontext        %lld positions\n", (long long)s->max_position);
    if (s->sliding_window) {
        int n = 0;
        for (int64_t i = 0; i < s->layers; i++)
            n += s->layer_sliding[i];
        printf("sliding window %lld tokens on %d of %lld layers\n", (long long)s->sliding_window, n,
               (long long)s->layers);
    }
    printf("biases         q/k/v %s, o %s, mlp %s%s\n", s->qkv_bias ? "yes" : "no", s->o_bias ? "yes" : "no",
           s->mlp_bias ? "yes" : "no", s->attention_sinks ? "; attention sinks" : "");
    printf("embeddings     %s\n", s->tie_embeddings ? "tied to the head" : "untied");

    struct param_counts pc;
    layout_count_params(s, &pc);
    printf("\nparameters by component\n");
    for (int c = 0; c < COMPONENT_COUNT; c++)
        if (pc.component[c])
            printf("  %-12s %20s  %6.2f%%\n", layout_component_name((enum component)c),
                   units_fmt_count(pc.component[c], buf, sizeof buf), 100.0 * (double)pc.component[c] / (double)pc.total);
    printf("  %-12s %20s\n", "total", units_fmt_count(pc.total, buf, sizeof buf));
    if (s->experts) {
        int64_t active = pc.total - pc.component[COMPONENT_EXPERTS] +
                         pc.component[COMPONENT_EXPERTS] / s->experts * s->experts_per_token;
        printf("  %-12s %20s  (top-%lld experts)\n", "active/token", units_fmt_count(active, buf, sizeof buf),
               (long long)s->experts_per_token);
    }
}

/* ---- tensors ---- */

/* "[128, 4096]", "[]" for a scalar. */
static char *fmt_shape(int rank, const int64_t *shape, char *buf, size_t len)
{
    size_t k = (size_t)snprintf(buf, len, "[");
    for (int d = 0; d < rank && k < len; d++)
        k += (size_t)snprintf(buf + k, len - k, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (k < len)
        snprintf(buf + k, len - k, "]");
    return buf;
}

/* A name or value from a file, for the terminal: control bytes (JSON escapes can put them
 * in a tensor name) shown as '?', cut at len - 1 bytes. */
static const char *clean(const char *s, char *buf, size_t len)
{
    size_t i = 0;
    for (; s[i] && i + 1 < len; i++)
        buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    buf[i] = 0;
    return buf;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static int64_t numel(const struct st_tensor *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->rank; d++)
        n *= t->shape[d];
    return n;
}

/* The summary lines of a model's weights: count, bytes, per dtype, per shard. */
static void print_weights_summary(const struct st_model *m)
{
    int64_t bytes = 0, elements = 0, per_dtype[DTYPE_COUNT] = {0}, bytes_dtype[DTYPE_COUNT] = {0};
    char b1[64], b2[64];
    for (int i = 0; i < m->n_tensors; i++) {
        const struct st_tensor *t = m->tensors[i].tensor;
        bytes += t->nbytes;
        elements += numel(t);
        per_dtype[t->dtype]++;
        bytes_dtype[t->dtype] += t->nbytes;
    }
    printf("tensors        %d in %d file%s, %s, %s elements\n", m->n_tensors, m->n_files,
           m->n_files == 1 ? "" : "s", units_fmt_bytes(bytes, b1, sizeof b1),
           units_fmt_count(elements, b2, sizeof b2));
    printf("dtypes        ");
    for (int t = 0, first = 1; t < DTYPE_COUNT; t++)
        if (per_dtype[t]) {
            printf("%s %s %lld (%s)", first ? "" : ",", dtype_name((enum dtype)t), (long long)per_dtype[t],
                   units_fmt_bytes(bytes_dtype[t], b1, sizeof b1));
            first = 0;
        }
    printf("\n");
    if (m->n_files == 1) {
        printf("file           %s\n", m->files[0].path);
        return;
    }
    printf("shards         %d\n", m->n_files);
    for (int f = 0; f < m->n_files; f++) {
        int64_t fb = 0;
        for (int i = 0; i < m->files[f].n_tensors; i++)
            fb += m->files[f].tensors[i].nbytes;
        printf("  %-40s %6d tensors  %12s\n", base_name(m->files[f].path), m->files[f].n_tensors,
               units_fmt_bytes(fb, b1, sizeof b1));
    }
}

/* Every tensor, one a line: name, dtype, shape, and the shard when there are several. */
static void print_tensor_table(const struct st_model *m)
{
    int width = 6;
    char shape[160], name[256];
    for (int i = 0; i < m->n_tensors; i++) {
        int n = (int)strlen(m->tensors[i].name);
        width = n > width ? n : width;
    }
    width = width > 64 ? 64 : width;
    printf("\n%-*s  %-7s %s\n", width, "tensor", "dtype", "shape");
    for (int i = 0; i < m->n_tensors; i++) {
        const struct st_tensor *t = m->tensors[i].tensor;
        printf("%-*s  %-7s %s", width, clean(t->name, name, sizeof name), dtype_name(t->dtype),
               fmt_shape(t->rank, t->shape, shape, sizeof shape));
        if (m->n_files > 1)
            printf("  (%s)", base_name(m->tensors[i].file->path));
        printf("\n");
    }
}

static void print_metadata(const struct st_model *m)
{
    int shown = 0;
    char key[256], value[1024];
    for (int f = 0; f < m->n_files; f++)
        for (int i = 0; i < m->files[f].n_meta; i++) {
            const struct st_meta *e = &m->files[f].meta[i];
            printf("%s %s: %s", shown++ ? "              " : "metadata      ", clean(e->key, key, sizeof key),
                   clean(e->value, value, sizeof value));
            if (m->n_files > 1)
                printf("  (%s)", base_name(m->files[f].path));
            printf("\n");
        }
    if (!shown)
        printf("metadata       none\n");
}

/* A .safetensors file, an index, or a folder of weights without config.json. */
static int inspect_weights(const char *path, tune_err *err)
{
    struct st_model m;
    if (st_model_open(&m, path, err))
        return -1;
    print_weights_summary(&m);
    print_metadata(&m);
    print_tensor_table(&m);
    st_model_close(&m);
    return 0;
}

/* A tensor the spec says the checkpoint holds. */
struct want_tensor {
    char name[160];
    int rank; /* 1 or 2 */
    int64_t shape[2];
};

struct want_list {
    struct want_tensor *v;
    size_t n, cap;
};

static int want_add(struct want_list *w, const char *name, int rank, int64_t d0, int64_t d1, tune_err *err)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 64;
        struct want_tensor *v = realloc(w->v, cap * sizeof *v);
        if (!v)
            return err_set(err, "out of memory listing the expected tensors");
        w->v = v;
        w->cap = cap;
    }
    struct want_tensor *t = &w->v[w->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->rank = rank;
    t->shape[0] = d0;
    t->shape[1] = d1;
    return 0;
}

static int want_cmp(const void *a, const void *b)
{
    return strcmp(((const struct want_tensor *)a)->name, ((const struct want_tensor *)b)->name);
}

/* The tensors of a Llama-family checkpoint, as model/llama_load.c reads them (the same
 * names, from the same layout_layer_linears table), sorted by name. */
static int want_llama(const struct model_spec *s, struct want_list *w, tune_err *err)
{
    struct linear_shape lin[LAYOUT_MAX_LINEARS];
    int n_lin = layout_layer_linears(s, lin), rc;
    char name[160];
    rc = want_add(w, "model.embed_tokens.weight", 2, s->vocab, s->hidden, err) ||
         want_add(w, "model.norm.weight", 1, s->hidden, 0, err) ||
         (!s->tie_embeddings && want_add(w, "lm_head.weight", 2, s->vocab, s->hidden, err));
    for (int64_t l = 0; !rc && l < s->layers; l++) {
        for (int i = 0; !rc && i < n_lin; i++) {
            snprintf(name, sizeof name, "model.layers.%lld.%s.weight", (long long)l, lin[i].module);
            rc = want_add(w, name, 2, lin[i].out, lin[i].in, err);
            snprintf(name, sizeof name, "model.layers.%lld.%s.bias", (long long)l, lin[i].module);
            if (!rc && lin[i].bias)
                rc = want_add(w, name, 1, lin[i].out, 0, err);
        }
        snprintf(name, sizeof name, "model.layers.%lld.input_layernorm.weight", (long long)l);
        rc = rc || want_add(w, name, 1, s->hidden, 0, err);
        snprintf(name, sizeof name, "model.layers.%lld.post_attention_layernorm.weight", (long long)l);
        rc = rc || want_add(w, name, 1, s->hidden, 0, err);
    }
    if (!rc)
        qsort(w->v, w->n, sizeof *w->v, want_cmp);
    return rc ? -1 : 0;
}

enum check_kind { CHECK_MISSING, CHECK_SHAPE, CHECK_DTYPE, CHECK_EXTRA, CHECK_COUNT };

static const char *const check_names[] = {"missing", "wrong shape", "wrong dtype", "extra"};
_Static_assert(sizeof check_names / sizeof check_names[0] == CHECK_COUNT, "check names");

struct check {
    int64_t count[CHECK_COUNT];
    char lines[CHECK_COUNT][SHOW_MAX][320]; /* the first SHOW_MAX of each kind */
};

static void check_note(struct check *c, enum check_kind k, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void check_note(struct check *c, enum check_kind k, const char *fmt, ...)
{
    if (c->count[k] < SHOW_MAX) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->lines[k][c->count[k]], sizeof c->lines[k][0], fmt, ap);
        va_end(ap);
    }
    c->count[k]++;
}

/* Compares the checkpoint with the tensors the spec implies, both sorted by name. Returns
 * 1 when the weights would not load (missing, shape or dtype), 0 when they would, -1 on
 * error. */
static int check_weights(const struct model_spec *s, const struct st_model *m, tune_err *err)
{
    if (s->arch != MODEL_ARCH_LLAMA && s->arch != MODEL_ARCH_MISTRAL && s->arch != MODEL_ARCH_QWEN2) {
        printf("check          not done: tune checks the tensors of the Llama family (Llama, Mistral, "
               "Qwen2), not of %s\n", spec_arch_name(s->arch));
        return 0;
    }
    struct want_list w = {0};
    struct check *c = calloc(1, sizeof *c);
    if (!c || want_llama(s, &w, err)) {
        free(c);
        free(w.v);
        return c ? -1 : err_set(err, "out of memory");
    }
    char got[160], want[160], name[160];
    size_t i = 0, j = 0;
    int64_t params = 0;
    while (i < w.n || j < (size_t)m->n_tensors) {
        int cmp = i == w.n ? 1 : j == (size_t)m->n_tensors ? -1 : strcmp(w.v[i].name, m->tensors[j].name);
        const struct want_tensor *wt = cmp <= 0 ? &w.v[i] : NULL;
        const struct st_tensor *t = cmp >= 0 ? m->tensors[j].tensor : NULL;
        if (wt)
            fmt_shape(wt->rank, wt->shape, want, sizeof want);
        if (t)
            fmt_shape(t->rank, t->shape, got, sizeof got);
        if (!t) {
            check_note(c, CHECK_MISSING, "%s %s", wt->name, want);
        } else if (!wt) {
            check_note(c, CHECK_EXTRA, "%s %s %s (not read)", clean(t->name, name, sizeof name),
                       dtype_name(t->dtype), got);
        } else if (t->rank != wt->rank || t->shape[0] != wt->shape[0] ||
                   (wt->rank == 2 && t->shape[1] != wt->shape[1])) {
            check_note(c, CHECK_SHAPE, "%s is %s, config.json says %s", t->name, got, want);
        } else if (t->dtype != DTYPE_F32 && t->dtype != DTYPE_F16 && t->dtype != DTYPE_BF16) {
            check_note(c, CHECK_DTYPE, "%s is %s; tune reads F32, F16 and BF16 weights", t->name,
                       dtype_name(t->dtype));
        } else {
            params += numel(t);
        }
        i += cmp <= 0;
        j += cmp >= 0;
    }
    int64_t bad = c->count[CHECK_MISSING] + c->count[CHECK_SHAPE] + c->count[CHECK_DTYPE];
    char buf[64];
    if (!bad && !c->count[CHECK_EXTRA]) {
        printf("check          ok: the %zu tensors of %s, shapes as config.json says (%s parameters)\n", w.n,
               spec_arch_name(s->arch), units_fmt_count(params, buf, sizeof buf));
    } else {
        printf("check          %s:",
               bad ? "FAILED, the weights would not load" : "ok, with tensors tune does not read");
        for (int k = 0, first = 1; k < CHECK_COUNT; k++)
            if (c->count[k]) {
                printf("%s %lld %s", first ? "" : ",", (long long)c->count[k], check_names[k]);
                first = 0;
            }
        printf(" (of %zu expected, %d in the files)\n", w.n, m->n_tensors);
        for (int k = 0; k < CHECK_COUNT; k++) {
            for (int64_t n = 0; n < c->count[k] && n < SHOW_MAX; n++)
                printf("  %-12s %s\n", check_names[k], c->lines[k][n]);
            if (c->count[k] > SHOW_MAX)
                printf("  %-12s ... and %lld more\n", check_names[k], (long long)(c->count[k] - SHOW_MAX));
        }
    }
    free(c);
    free(w.v);
    return bad ? 1 : 0;
}

/* ---- tokenizer ---- */

/* The tokenizer.json of a model folder: ids, special tokens, EOS, chat format. Returns 1
 * when its ids do not fit the model's vocabulary, 0 when they do or there is no tokenizer,
 * -1 on error. */
static int inspect_model_tokenizer(const char *dir, const struct model_spec *s, tune_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (access(path, F_OK) != 0) {
        printf("tokenizer      none (no tokenizer.json in the folder)\n");
        return 0;
    }
    struct tokenizer *tok;
    if (tok_load(&tok, path, err))
        return -1;
    int32_t vocab = tok_vocab_size(tok), special = 0;
    for (int32_t id = 0; id < vocab; id++)
        special += tok_is_special(tok, id);
    printf("tokenizer      tokenizer.json, %d ids, %d special\n", vocab, special);
    if (special) {
        printf("special       ");
        int shown = 0;
        char name[128];
        for (int32_t id = 0; id < vocab && shown < 8; id++)
            if (tok_is_special(tok, id))
                printf("%s %s (%d)", shown++ ? "," : "", clean(tok_id_to_token(tok, id), name, sizeof name), id);
        printf("%s\n", special > shown ? ", ..." : "");
    }
    int32_t eos[MODEL_MAX_EOS];
    tune_err eos_err;
    int n_eos = model_eos_ids(dir, tok, eos, &eos_err);
    if (n_eos < 0)
        printf("eos            none (%s)\n", eos_err.msg);
    for (int i = 0; i < n_eos; i++) {
        const char *t = eos[i] >= 0 && eos[i] < vocab ? tok_id_to_token(tok, eos[i]) : NULL;
        char name[128];
        printf("%s %s (%d)%s", i ? "," : "eos           ", t ? clean(t, name, sizeof name) : "(not a token)", eos[i],
               i == n_eos - 1 ? "\n" : "");
    }
    enum chat_format cf;
    tune_err cf_err;
    const char *model_type = spec_model_type(s->arch);
    if (chat_format_for_model(model_type, s->vocab, &cf, &cf_err) == 0)
        printf("chat format    %s (for \"messages\" records; --chat-format overrides)\n", chat_format_name(cf));
    else
        printf("chat format    none built in for this model (--chat-format picks one)\n");
    int rc = 0;
    if (vocab > s->vocab) {
        printf("check          FAILED: the tokenizer has %d ids but the embedding %lld rows: ids from %lld "
               "on have none\n", vocab, (long long)s->vocab, (long long)s->vocab);
        rc = 1;
    }
    tok_free(tok);
    return rc;
}

/* A model folder (config.json beside weights and tokenizer) or a preset / config file. */
static int inspect_model(const char *path, bool folder, bool list_tensors, tune_err *err)
{
    struct model_spec spec;
    if (spec_resolve(&spec, path, err))
        return -1;
    print_spec(&spec);
    if (!folder)
        return 0;
    printf("\nweights\n");
    char index[4096], single[4096];
    snprintf(index, sizeof index, "%s/%s", path, ST_INDEX_NAME);
    snprintf(single, sizeof single, "%s/%s", path, ST_SINGLE_NAME);
    int bad = 0, rc;
    if (access(index, F_OK) != 0 && access(single, F_OK) != 0) {
        printf("tensors        none (no %s or %s: a config-only folder plans but does not train)\n",
               ST_SINGLE_NAME, ST_INDEX_NAME);
    } else {
        struct st_model m;
        if (st_model_open(&m, path, err))
            return -1;
        print_weights_summary(&m);
        rc = check_weights(&spec, &m, err);
        if (rc >= 0 && list_tensors)
            print_tensor_table(&m);
        st_model_close(&m);
        if (rc < 0)
            return -1;
        bad |= rc;
    }
    printf("\n");
    if ((rc = inspect_model_tokenizer(path, &spec, err)) < 0)
        return -1;
    bad |= rc;
    if (bad)
        return err_set(err, "%s: the weights or the tokenizer do not fit config.json: see the report above", path);
    return 0;
}

/* ---- datasets ---- */

#define SHAPE_MAX 8 /* distinct record shapes listed; more are counted together */

struct shape_count {
    char name[200]; /* "text", "prompt/completion", "messages", or "{a, b, c}" */
    int64_t count;
};

struct shape_ctx {
    struct shape_count shapes[SHAPE_MAX];
    int n;
    int64_t other, records;
};

static int key_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A record's shape as data/example.c reads it; other shapes by their sorted field names. */
static void record_shape(const cJSON *r, char *buf, size_t len)
{
    if (cJSON_GetObjectItemCaseSensitive(r, "messages")) {
        snprintf(buf, len, "messages");
    } else if (cJSON_GetObjectItemCaseSensitive(r, "prompt") || cJSON_GetObjectItemCaseSensitive(r, "completion")) {
        snprintf(buf, len, "prompt/completion");
    } else if (cJSON_GetObjectItemCaseSensitive(r, "text")) {
        snprintf(buf, len, "text");
    } else {
        const char *keys[16];
        int n = 0, more = 0;
        for (const cJSON *f = r->child; f; f = f->next)
            if (n < 16)
                keys[n++] = f->string;
            else
                more++;
        qsort(keys, (size_t)n, sizeof keys[0], key_cmp);
        size_t k = (size_t)snprintf(buf, len, "{");
        for (int i = 0; i < n && k < len; i++)
            k += (size_t)snprintf(buf + k, len - k, i ? ", %s" : "%s", keys[i]);
        if (k < len)
            snprintf(buf + k, len - k, more ? ", ...}" : "}");
    }
}

static int on_shape(void *ctx, const cJSON *record, const struct data_origin *origin, tune_err *err)
{
    (void)origin;
    (void)err;
    struct shape_ctx *c = ctx;
    char name[200];
    c->records++;
    if (!cJSON_IsObject(record))
        return err_set(err, "not an object");
    record_shape(record, name, sizeof name);
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->shapes[i].name, name) == 0) {
            c->shapes[i].count++;
            return 0;
        }
    if (c->n == SHAPE_MAX) {
        c->other++;
        return 0;
    }
    snprintf(c->shapes[c->n].name, sizeof c->shapes[0].name, "%s", name);
    c->shapes[c->n++].count = 1;
    return 0;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Lengths of the examples: percentiles and a histogram of power-of-two buckets. */
static void print_lengths(const struct dataset *d, int64_t max_length)
{
    char buf[64];
    const struct data_stats *s = &d->stats;
    printf("examples       %zu (%lld dropped: no trained token)\n", d->n, (long long)s->dropped);
    printf("tokens         %s, %s trained (%.1f%%)\n", units_fmt_count(s->tokens, buf, sizeof buf),
           units_fmt_count(s->trained, buf + 32, sizeof buf - 32),
           s->tokens ? 100.0 * (double)s->trained / (double)s->tokens : 0.0);
    int32_t *len = malloc(d->n * sizeof *len);
    if (!len)
        return;
    for (size_t i = 0; i < d->n; i++)
        len[i] = d->ex[i].len;
    qsort(len, d->n, sizeof *len, cmp_i32);
    size_t n = d->n;
    printf("length         min %d, median %d, p90 %d, p99 %d, max %d, mean %.1f\n", len[0], len[(n - 1) / 2],
           len[(size_t)((double)(n - 1) * 0.9)], len[(size_t)((double)(n - 1) * 0.99)], len[n - 1],
           (double)s->tokens / (double)n);
    if (max_length) {
        size_t over = 0;
        while (over < n && len[n - 1 - over] > max_length)
            over++;
        printf("longer than    %lld tokens: %zu of %zu examples (%.1f%%), which --max-length %lld would "
               "truncate\n", (long long)max_length, over, n, 100.0 * (double)over / (double)n, (long long)max_length);
    }
    int64_t bucket[32] = {0}, most = 0;
    int lo = 31, hi = 0;
    for (size_t i = 0; i < n; i++) {
        int b = 0;
        while (b < 31 && ((int64_t)1 << (b + 1)) < len[i])
            b++; /* bucket b holds lengths in (2^b, 2^(b+1)] */
        bucket[b]++;
        lo = b < lo ? b : lo;
        hi = b > hi ? b : hi;
    }
    for (int b = lo; b <= hi; b++)
        most = bucket[b] > most ? bucket[b] : most;
    printf("\ntokens per example\n");
    for (int b = lo; b <= hi; b++) {
        char range[48];
        snprintf(range, sizeof range, "%lld-%lld", ((long long)1 << b) + 1, (long long)1 << (b + 1));
        int bar = most ? (int)((40 * bucket[b] + most - 1) / most) : 0;
        printf("  %15s %8lld  %.*s\n", range, (long long)bucket[b], bar, "########################################");
    }
    free(len);
}

/* The dataset's tokens with --model (as tune train builds them) or --tokenizer. */
static int load_tokens(const struct inspect_args *a, struct dataset *d, struct tokenizer **tok,
                       struct data_template **tmpl, tune_err *err)
{
    const char *data = a->v[OPT_PATH];
    int32_t eos[MODEL_MAX_EOS];
    if (a->v[OPT_MODEL]) {
        struct model_spec spec;
        if (spec_resolve(&spec, a->v[OPT_MODEL], err) || model_load_tokenizer(a->v[OPT_MODEL], tok, err) ||
            model_eos_ids(a->v[OPT_MODEL], *tok, eos, err) < 0)
            return -1;
        struct data_request req = {data, a->v[OPT_TEMPLATE], a->v[OPT_CHAT], &spec, 0, NULL, NULL};
        printf("tokenizer      %s/tokenizer.json, eos %s (%d)\n", a->v[OPT_MODEL], tok_id_to_token(*tok, eos[0]),
               eos[0]);
        return data_setup_load(&req, *tok, eos[0], d, tmpl, err);
    }
    struct data_options o;
    if (tok_load(tok, a->v[OPT_TOKENIZER], err))
        return -1;
    data_options_init(&o, *tok);
    /* the EOS of the files beside the tokenizer (tokenizer_config.json, ...), if any */
    char dir[4096];
    const char *slash = strrchr(a->v[OPT_TOKENIZER], '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - a->v[OPT_TOKENIZER]) : 1,
             slash ? a->v[OPT_TOKENIZER] : ".");
    tune_err ignored;
    if (model_eos_ids(dir, *tok, eos, &ignored) > 0 && eos[0] >= 0 && eos[0] < tok_vocab_size(*tok))
        o.eos_id = eos[0];
    if (o.eos_id >= 0)
        printf("tokenizer      %s, eos %s (%d)\n", a->v[OPT_TOKENIZER], tok_id_to_token(*tok, o.eos_id), o.eos_id);
    else
        printf("tokenizer      %s, no eos appended (none beside it)\n", a->v[OPT_TOKENIZER]);
    if (a->v[OPT_CHAT]) {
        if (chat_format_parse(a->v[OPT_CHAT], &o.chat_format, err))
            return err_prefix(err, "--chat-format");
        o.chat = true;
    }
    if (a->v[OPT_TEMPLATE] && data_template_load(tmpl, a->v[OPT_TEMPLATE], err))
        return -1;
    o.tmpl = *tmpl;
    return dataset_load(d, data, &o, err);
}

static int inspect_dataset(const struct inspect_args *a, tune_err *err)
{
    const char *path = a->v[OPT_PATH];
    struct shape_ctx *c = calloc(1, sizeof *c);
    int64_t files = 0;
    if (!c)
        return err_set(err, "out of memory");
    if (data_source_read(path, 0, on_shape, c, &files, err)) {
        free(c);
        return -1;
    }
    printf("data           %s (%lld file%s, %lld records)\n", path, (long long)files, files == 1 ? "" : "s",
           (long long)c->records);
    for (int i = 0; i < c->n; i++)
        printf("%s %8lld  %s\n", i ? "              " : "shapes        ", (long long)c->shapes[i].count,
               c->shapes[i].name);
    if (c->other)
        printf("               %8lld  of other shapes\n", (long long)c->other);
    if (a->v[OPT_TEMPLATE])
        printf("template       %s builds every record\n", a->v[OPT_TEMPLATE]);
    bool none = c->records == 0;
    free(c);
    if (none)
        return err_set(err, "%s: no records", path);
    if (!a->v[OPT_TOKENIZER] && !a->v[OPT_MODEL]) {
        printf("tokens         not counted: give --tokenizer FILE or --model DIR\n");
        return 0;
    }
    struct tokenizer *tok = NULL;
    struct data_template *tmpl = NULL;
    struct dataset d = {0};
    int rc = load_tokens(a, &d, &tok, &tmpl, err);
    if (rc == 0)
        print_lengths(&d, a->max_length);
    dataset_free(&d);
    data_template_free(tmpl);
    tok_free(tok);
    return rc;
}

/* ---- what PATH is ---- */

enum path_kind { PATH_PRESET, PATH_MODEL_DIR, PATH_CONFIG, PATH_WEIGHTS, PATH_DATASET };

static bool exists_in(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

/* The first non-space byte of a file, or 0. */
static int first_byte(const char *path)
{
    FILE *f = fopen(path, "rb");
    int ch = 0;
    if (!f)
        return 0;
    while ((ch = fgetc(f)) != EOF && isspace(ch))
        ;
    fclose(f);
    return ch == EOF ? 0 : ch;
}

static int classify(const char *path, enum path_kind *kind, tune_err *err)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        if (spec_preset_config(path)) {
            *kind = PATH_PRESET;
            return 0;
        }
        return err_set(err, "%s: no such model folder, file or preset", path);
    }
    if (S_ISDIR(st.st_mode))
        *kind = exists_in(path, "config.json")                                               ? PATH_MODEL_DIR
                : exists_in(path, ST_INDEX_NAME) || exists_in(path, ST_SINGLE_NAME) ? PATH_WEIGHTS
                                                                                             : PATH_DATASET;
    else if (str_ends_with(path, ".safetensors") || str_ends_with(path, ".safetensors.index.json"))
        *kind = PATH_WEIGHTS;
    else if (str_ends_with(path, ".jsonl"))
        *kind = PATH_DATASET;
    else if (str_ends_with(path, ".json"))
        *kind = first_byte(path) == '[' ? PATH_DATASET : PATH_CONFIG;
    else
        return err_set(err, "%s: not a model folder, .safetensors file, dataset (.json, .jsonl) or preset",
                       path);
    return 0;
}

/* Returns 0, -1 on an error, -2 on options that do not fit PATH (a usage error). */
static int run(const struct inspect_args *a, tune_err *err)
{
    enum path_kind kind;
    if (classify(a->v[OPT_PATH], &kind, err))
        return -1;
    bool data_opts = a->v[OPT_TOKENIZER] || a->v[OPT_MODEL] || a->v[OPT_TEMPLATE] || a->v[OPT_CHAT] ||
                     a->v[OPT_MAX_LENGTH];
    if (kind != PATH_DATASET && data_opts) {
        err_set(err, "--tokenizer, --model, --template, --chat-format and --max-length are for "
                "datasets; %s is not one", a->v[OPT_PATH]);
        return -2;
    }
    if (a->v[OPT_TOKENIZER] && a->v[OPT_MODEL]) {
        err_set(err, "give --tokenizer or --model, not both");
        return -2;
    }
    switch (kind) {
    case PATH_WEIGHTS:
        return inspect_weights(a->v[OPT_PATH], err);
    case PATH_DATASET:
        return inspect_dataset(a, err);
    case PATH_MODEL_DIR:
        return inspect_model(a->v[OPT_PATH], true, a->v[OPT_TENSORS] != NULL, err);
    case PATH_PRESET:
    case PATH_CONFIG:
        break;
    }
    return inspect_model(a->v[OPT_PATH], false, false, err);
}

int cmd_inspect(int argc, char **argv)
{
    struct cli_args ca = {argc, 0, argv};
    struct inspect_args a = {0};
    const char *value;
    tune_err err;
    int i;
    while ((i = cli_next(&ca, inspect_opts, OPT_COUNT, &value, &err)) >= 0) {
        if (i == OPT_HELP) {
            cli_print_help(stdout, "tune inspect PATH [options]", "Prints what PATH is to tune: the "
                           "spec and parameters per component of a preset or a model folder (with "
                           "its weights checked against the spec, and its tokenizer), the tensors of "
                           "a .safetensors file, or the records and token lengths of a dataset.",
                           inspect_opts, OPT_COUNT);
            print_presets(stdout);
            return 0;
        }
        a.v[i] = value ? value : "";
    }
    if (i == -2 || (a.v[OPT_MAX_LENGTH] && units_parse_int(a.v[OPT_MAX_LENGTH], "--max-length", 2, 1 << 24,
                                                           &a.max_length, &err))) {
        fprintf(stderr, "tune inspect: %s\n", err.msg);
        return 2;
    }
    const char *path = a.v[OPT_PATH];
    if (!path) {
        fprintf(stderr, "tune inspect: name a model (a preset or a folder), a .safetensors file or a dataset\n");
        print_presets(stderr);
        return 2;
    }
    if (a.v[OPT_CONFIG]) {
        const char *text = spec_preset_config(path);
        if (!text) {
            fprintf(stderr, "tune inspect: --config: '%s' is not a preset\n", path);
            return 1;
        }
        cJSON *root = cJSON_Parse(text);
        char *pretty = root ? cJSON_Print(root) : NULL;
        printf("%s\n", pretty ? pretty : text);
        free(pretty);
        cJSON_Delete(root);
        return 0;
    }
    int rc = run(&a, &err);
    if (rc) {
        fflush(stdout);
        fprintf(stderr, "tune inspect: %s\n", err.msg);
        return rc == -2 ? 2 : 1;
    }
    return 0;
}
