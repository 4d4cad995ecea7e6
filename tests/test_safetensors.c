/* Tests for io/safetensors and io/atomic_file: round trips of every dtype; files
 * written by Python's safetensors (tools/ref/make_safetensors_fixtures.py) read
 * back and rewritten byte for byte; sharded models; one case per kind of bad
 * input, each with its own message; a seeded mini-fuzz (meant for the SAN=1
 * build); a writer killed mid-write. Bad inputs are made here by mutating good
 * bytes, so the fixtures stay three small files. Run from the repository root. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/atomic_file.h"
#include "io/safetensors.h"

#define FIXTURES "tests/fixtures/safetensors"

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

static char *tmp_dir(void)
{
    char *d = strdup("/tmp/tune-st-XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

/* Number of entries in a flat directory; with `remove`, deletes them and it. */
static int dir_entries(char *dir, int remove)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        n++;
        if (remove) {
            char *p = join(dir, e->d_name);
            unlink(p);
            free(p);
        }
    }
    closedir(d);
    if (remove) {
        rmdir(dir);
        free(dir);
    }
    return n;
}

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    rewind(f);
    uint8_t *p = malloc(*n ? *n : 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, *n, f), *n);
    fclose(f);
    return p;
}

static void spit(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static uint64_t fnv1a64(const void *p, int64_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int64_t i = 0; i < n; i++)
        h = (h ^ ((const uint8_t *)p)[i]) * 0x100000001b3ULL;
    return h;
}

/* Writes every tensor and metadata entry of f into a fresh writer. */
static void copy_to_writer(const struct st_file *f, struct st_writer *w)
{
    tune_err err;
    st_writer_init(w);
    for (int i = 0; i < f->n_tensors; i++) {
        const struct st_tensor *t = &f->tensors[i];
        assert_int_equal(st_writer_add(w, t->name, t->dtype, t->rank, t->shape, t->data, &err), 0);
    }
    for (int i = 0; i < f->n_meta; i++)
        assert_int_equal(st_writer_set_metadata(w, f->meta[i].key, f->meta[i].value, &err), 0);
}

static void test_round_trip_every_dtype(void **state)
{
    (void)state;
    static const enum dtype all[] = {DTYPE_F64,     DTYPE_F32,     DTYPE_F16, DTYPE_BF16,
                                     DTYPE_F8_E4M3, DTYPE_F8_E5M2, DTYPE_I64, DTYPE_I32,
                                     DTYPE_I16,     DTYPE_I8,      DTYPE_U8};
    enum { N = sizeof all / sizeof all[0] };
    uint8_t data[N][192];
    for (int k = 0; k < N; k++)
        for (int j = 0; j < 192; j++)
            data[k][j] = (uint8_t)(k * 37 + j * 11 + 1);
    char *dir = tmp_dir(), *path = join(dir, "rt.safetensors");
    tune_err err;
    struct st_writer w;
    st_writer_init(&w);
    for (int k = 0; k < N; k++) { /* shape [k + 1, 2] */
        char name[32];
        snprintf(name, sizeof name, "t.%s", dtype_name(all[k]));
        int64_t shape[2] = {k + 1, 2};
        assert_int_equal(st_writer_add(&w, name, all[k], 2, shape, data[k], &err), 0);
    }
    int64_t rank8[8] = {1, 2, 1, 2, 1, 2, 1, 2}, empty[2] = {3, 0};
    assert_int_equal(st_writer_add(&w, "scalar", DTYPE_F32, 0, NULL, data[0], &err), 0);
    assert_int_equal(st_writer_add(&w, "empty", DTYPE_BF16, 2, empty, NULL, &err), 0);
    assert_int_equal(st_writer_add(&w, "rank8", DTYPE_U8, 8, rank8, data[1], &err), 0);
    assert_int_equal(st_writer_set_metadata(&w, "format", "np", &err), 0);
    assert_int_equal(st_writer_set_metadata(&w, "note", "line\nbreak \"q\" \xc3\xbc\\\x01", &err),
                     0);
    assert_int_equal(st_writer_set_metadata(&w, "format", "pt", &err), 0);
    assert_int_equal(st_writer_write(&w, path, &err), 0);

    struct st_file f;
    assert_int_equal(st_file_open(&f, path, &err), 0);
    assert_int_equal(f.n_tensors, N + 3);
    for (int i = 1; i < f.n_tensors; i++)
        assert_true(strcmp(f.tensors[i - 1].name, f.tensors[i].name) < 0);
    for (int i = 0; i < w.n_tensors; i++) {
        const struct st_writer_tensor *e = &w.tensors[i];
        const struct st_tensor *t = st_file_find(&f, e->name);
        assert_non_null(t);
        assert_int_equal(t->dtype, e->dtype);
        assert_int_equal(t->rank, e->rank);
        assert_memory_equal(t->shape, e->shape, (size_t)e->rank * sizeof *e->shape);
        assert_int_equal(t->nbytes, e->nbytes);
        if (e->nbytes)
            assert_memory_equal(t->data, e->data, (size_t)e->nbytes);
        assert_int_equal((uintptr_t)t->data % (uintptr_t)(dtype_bits(t->dtype) / 8), 0);
    }
    assert_int_equal(st_file_find(&f, "t.F32")->nbytes, 4 * 2 * 2);
    assert_null(st_file_find(&f, "missing"));
    assert_int_equal(f.n_meta, 2);
    assert_string_equal(st_file_metadata(&f, "format"), "pt");
    assert_string_equal(st_file_metadata(&f, "note"), "line\nbreak \"q\" \xc3\xbc\\\x01");
    assert_null(st_file_metadata(&f, "absent"));
    st_file_close(&f);

    /* Replacing an existing file goes through the same rename. */
    st_writer_free(&w);
    st_writer_init(&w);
    assert_int_equal(st_writer_write(&w, path, &err), 0);
    assert_int_equal(st_file_open(&f, path, &err), 0);
    assert_int_equal(f.n_tensors, 0);
    assert_int_equal(f.size, 16); /* {} padded to 8 */
    st_file_close(&f);
    st_writer_free(&w);
    free(path);
    dir_entries(dir, 1);
}

/* Checks every tensor and metadata line of expected.txt whose file is
 * `rel` against f (when f is not NULL) or m; returns how many tensor lines. */
static int check_fixture_lines(const char *rel, const struct st_file *f, const struct st_model *m)
{
    FILE *fx = fopen(FIXTURES "/expected.txt", "r");
    assert_non_null(fx);
    char line[512], file[128], name[128], dt[16], shape[64], want[64];
    long long nbytes;
    unsigned long long sum;
    int n = 0;
    while (fgets(line, sizeof line, fx)) {
        if (sscanf(line, "meta %127s %127s %63s", file, name, want) == 3 && f &&
            !strcmp(file, rel)) {
            assert_non_null(st_file_metadata(f, name));
            assert_string_equal(st_file_metadata(f, name), want);
        }
        if (sscanf(line, "tensor %127s %127s %15s %63s %lld %llx", file, name, dt, shape, &nbytes,
                   &sum) != 6 ||
            strcmp(file, rel))
            continue;
        const struct st_file *in = NULL;
        const struct st_tensor *t = f ? st_file_find(f, name) : st_model_find(m, name, &in);
        if (!t)
            fail_msg("%s: tensor %s not found", rel, name);
        if (in) /* the model found it in the shard expected.txt names */
            assert_string_equal(in->path + strlen(in->path) - strlen(strrchr(rel, '/')),
                                strrchr(rel, '/'));
        assert_string_equal(dtype_name(t->dtype), dt);
        size_t at = (size_t)snprintf(want, sizeof want, "[");
        for (int d = 0; d < t->rank; d++)
            at += (size_t)snprintf(want + at, sizeof want - at, "%s%lld", d ? "," : "",
                                   (long long)t->shape[d]);
        snprintf(want + at, sizeof want - at, "]");
        assert_string_equal(want, shape);
        assert_int_equal(t->nbytes, nbytes);
        assert_int_equal(fnv1a64(t->data, t->nbytes), sum);
        n++;
    }
    fclose(fx);
    return n;
}

static void test_python_fixtures(void **state)
{
    (void)state;
    static const char *files[] = {"single.safetensors", "sharded/model-00001-of-00002.safetensors",
                                  "sharded/model-00002-of-00002.safetensors"};
    char *dir = tmp_dir(), *out = join(dir, "rewrite.safetensors");
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *path = join(FIXTURES, files[i]);
        struct st_file f;
        tune_err err;
        if (st_file_open(&f, path, &err) != 0)
            fail_msg("%s", err.msg);
        assert_int_equal(check_fixture_lines(files[i], &f, NULL), f.n_tensors);
        /* Our writer makes the same bytes as the reference writer. */
        struct st_writer w;
        copy_to_writer(&f, &w);
        assert_int_equal(st_writer_write(&w, out, &err), 0);
        size_t n;
        uint8_t *bytes = slurp(out, &n);
        assert_int_equal(n, f.size);
        assert_memory_equal(bytes, f.bytes, n);
        free(bytes);
        st_writer_free(&w);
        st_file_close(&f);
        free(path);
    }
    free(out);
    dir_entries(dir, 1);
}

static void test_sharded_fixture(void **state)
{
    (void)state;
    struct st_model m;
    tune_err err;
    const char *base = "model.layers.0.mlp.experts.gate_up_proj";
    if (st_model_open(&m, FIXTURES "/sharded", &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(m.n_files, 2);
    int n = check_fixture_lines("sharded/model-00001-of-00002.safetensors", NULL, &m) +
            check_fixture_lines("sharded/model-00002-of-00002.safetensors", NULL, &m);
    assert_int_equal(n, m.n_tensors);
    const struct st_tensor *b, *s;
    assert_int_equal(st_model_find_mxfp4(&m, base, &b, &s, &err), 0);
    assert_int_equal(b->rank, 4);
    assert_int_equal(b->shape[3], 16);
    assert_int_equal(s->shape[2], 2);
    assert_int_equal(st_model_find_mxfp4(&m, "model.layers.1.mlp.experts.down_proj", &b, &s, &err),
                     -1);
    assert_non_null(strstr(err.msg, "down_proj_blocks' not found"));
    st_model_close(&m);
    /* The index file itself, and one shard as a plain file, open the same way. */
    assert_int_equal(st_model_open(&m, FIXTURES "/sharded/model.safetensors.index.json", &err), 0);
    assert_int_equal(m.n_tensors, 6);
    st_model_close(&m);
    assert_int_equal(st_model_open(&m, FIXTURES "/sharded/model-00002-of-00002.safetensors", &err),
                     0);
    assert_int_equal(m.n_tensors, 3);
    assert_null(st_model_find(&m, "model.embed_tokens.weight", NULL));
    st_model_close(&m);
}

static void test_sharded_writer(void **state)
{
    (void)state;
    static uint8_t data[300];
    for (int i = 0; i < 300; i++)
        data[i] = (uint8_t)(i * 7);
    int64_t small[1] = {10}, big[1] = {75}, blocks[3] = {2, 3, 16}, scales[2] = {2, 4};
    struct st_writer w;
    tune_err err;
    st_writer_init(&w);
    /* 40, 40 | 40 | 300 | 40 bytes with at most 100 per shard: four shards */
    const char *names[] = {"z.first", "a.second", "m.third", "big", "last"};
    for (int i = 0; i < 5; i++)
        assert_int_equal(
            st_writer_add(&w, names[i], DTYPE_F32, 1, i == 3 ? big : small, data, &err), 0);
    char *dir = tmp_dir();
    assert_int_equal(st_writer_write_sharded(&w, dir, 100, &err), 0);
    assert_int_equal(dir_entries(dir, 0), 5);
    struct st_model m;
    if (st_model_open(&m, dir, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(m.n_files, 4);
    assert_int_equal(m.n_tensors, 5);
    const struct st_file *in;
    const struct st_tensor *t = st_model_find(&m, "big", &in);
    assert_non_null(strstr(in->path, "model-00003-of-00004.safetensors"));
    assert_memory_equal(t->data, data, 300);
    st_model_close(&m);
    dir_entries(dir, 1);

    /* Everything in one shard: a lone model.safetensors, as transformers does;
     * an MXFP4 pair whose shapes disagree is found and refused. */
    assert_int_equal(st_writer_add(&w, "e.gate_blocks", DTYPE_U8, 3, blocks, data, &err), 0);
    assert_int_equal(st_writer_add(&w, "e.gate_scales", DTYPE_U8, 2, scales, data, &err), 0);
    assert_int_equal(st_writer_add(&w, "e.up_blocks", DTYPE_F16, 3, blocks, data, &err), 0);
    assert_int_equal(st_writer_add(&w, "e.up_scales", DTYPE_U8, 2, blocks, data, &err), 0);
    dir = tmp_dir();
    assert_int_equal(st_writer_write_sharded(&w, dir, 1 << 20, &err), 0);
    assert_int_equal(dir_entries(dir, 0), 1);
    assert_int_equal(st_model_open(&m, dir, &err), 0);
    assert_int_equal(m.n_tensors, 9);
    const struct st_tensor *b, *s;
    assert_int_equal(st_model_find_mxfp4(&m, "e.gate", &b, &s, &err), -1);
    assert_non_null(strstr(err.msg, "tensor 'e.gate_blocks': shape [2, 3, 16] is not that of "
                                    "'e.gate_scales' [2, 4] + [16]"));
    assert_int_equal(st_model_find_mxfp4(&m, "e.up", &b, &s, &err), -1);
    assert_non_null(
        strstr(err.msg, "tensor 'e.up_blocks': MXFP4 blocks and scales must be U8, not F16"));
    st_model_close(&m);
    dir_entries(dir, 1);
    st_writer_free(&w);
}

/* A made tensor's maker: a copy of the bytes at ctx, or (ctx NULL) a failure. Counts its calls. */
static int makes;

static int make_copy(void *ctx, void **data, tune_err *err)
{
    makes++;
    if (!ctx)
        return err_set(err, "no bytes today");
    *data = malloc(300);
    assert_non_null(*data);
    memcpy(*data, ctx, 300);
    return 0;
}

/* Tensors made at write time (st_writer_add_made) give the very bytes of the same tensors added as data, in
 * one file and in shards; each is made once, when written; a maker's failure names the file and the tensor
 * and leaves no file behind. */
static void test_made_tensors(void **state)
{
    (void)state;
    static uint8_t data[300];
    for (int i = 0; i < 300; i++)
        data[i] = (uint8_t)(i * 13);
    int64_t shape[1] = {75};
    const char *names[] = {"b.made", "a.data", "c.made"};
    struct st_writer plain, made;
    tune_err err;
    st_writer_init(&plain);
    st_writer_init(&made);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(st_writer_add(&plain, names[i], DTYPE_F32, 1, shape, data, &err), 0);
        assert_int_equal(i == 1 ? st_writer_add(&made, names[i], DTYPE_F32, 1, shape, data, &err)
                                : st_writer_add_made(&made, names[i], DTYPE_F32, 1, shape, make_copy, data, &err),
                         0);
    }
    assert_int_equal(makes, 0); /* nothing made when added */
    /* one file, then three shards and their index */
    const char *one[] = {"model.safetensors"}, *three[] = {"model-00001-of-00003.safetensors",
                                                            "model-00002-of-00003.safetensors",
                                                            "model-00003-of-00003.safetensors",
                                                            "model.safetensors.index.json"};
    const struct {
        int64_t shard;
        const char **files;
        int n;
    } cases[] = {{1 << 20, one, 1}, {300, three, 4}};
    for (int c = 0; c < 2; c++) {
        char *dp = tmp_dir(), *dm = tmp_dir();
        assert_int_equal(st_writer_write_sharded(&plain, dp, cases[c].shard, &err), 0);
        assert_int_equal(st_writer_write_sharded(&made, dm, cases[c].shard, &err), 0);
        assert_int_equal(dir_entries(dm, 0), cases[c].n);
        for (int i = 0; i < cases[c].n; i++) {
            char *fp = join(dp, cases[c].files[i]), *fm = join(dm, cases[c].files[i]);
            size_t np, nm;
            uint8_t *bp = slurp(fp, &np), *bm = slurp(fm, &nm);
            assert_int_equal(np, nm);
            assert_memory_equal(bp, bm, np);
            free(bp), free(bm), free(fp), free(fm);
        }
        dir_entries(dp, 1);
        dir_entries(dm, 1);
    }
    assert_int_equal(makes, 4); /* two made tensors, two writes */
    st_writer_free(&made);

    st_writer_init(&made);
    assert_int_equal(st_writer_add_made(&made, "w.fails", DTYPE_F32, 1, shape, make_copy, NULL, &err), 0);
    char *dir = tmp_dir(), *path = join(dir, "x.safetensors");
    assert_int_equal(st_writer_write(&made, path, &err), -1);
    assert_non_null(strstr(err.msg, "x.safetensors: tensor 'w.fails': no bytes today"));
    assert_int_equal(dir_entries(dir, 0), 0);
    dir_entries(dir, 1);
    free(path);
    st_writer_free(&made);
    st_writer_free(&plain);
}

static void test_writer_refuses(void **state)
{
    (void)state;
    struct st_writer w;
    tune_err err;
    int64_t shape[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1}, neg[1] = {-1}, huge[2] = {1LL << 40, 1LL << 40};
    uint8_t byte = 0;
    st_writer_init(&w);
    assert_int_equal(st_writer_add(&w, "q", DTYPE_NF4, 1, shape, &byte, &err), -1);
    assert_non_null(strstr(err.msg, "dtype NF4 has no safetensors name"));
    assert_int_equal(st_writer_add(&w, "r", DTYPE_U8, 9, shape, &byte, &err), -1);
    assert_int_equal(st_writer_add(&w, "n", DTYPE_U8, 1, neg, &byte, &err), -1);
    assert_int_equal(st_writer_add(&w, "h", DTYPE_U8, 2, huge, &byte, &err), -1);
    assert_int_equal(st_writer_add(&w, "__metadata__", DTYPE_U8, 1, shape, &byte, &err), -1);
    assert_int_equal(st_writer_add(&w, "d", DTYPE_U8, 1, shape, NULL, &err), -1);
    assert_int_equal(st_writer_add(&w, "x", DTYPE_U8, 1, shape, &byte, &err), 0);
    assert_int_equal(st_writer_add(&w, "x", DTYPE_I8, 1, shape, &byte, &err), 0);
    char *dir = tmp_dir(), *path = join(dir, "dup.safetensors");
    assert_int_equal(st_writer_write(&w, path, &err), -1);
    assert_non_null(strstr(err.msg, "tensor 'x': added twice"));
    assert_int_equal(st_writer_write_sharded(&w, dir, 0, &err), -1);
    assert_int_equal(dir_entries(dir, 0), 0);
    free(path);
    dir_entries(dir, 1);
    st_writer_free(&w);
}

/* A file image: u64 header length | header | data_size bytes, in a buffer of
 * exactly that size so that ASan sees any read past it. */
static uint8_t *image(const char *header, size_t data_size, size_t *n)
{
    size_t h = strlen(header);
    *n = 8 + h + data_size;
    uint8_t *p = calloc(1, *n);
    assert_non_null(p);
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(p + 8, header, h);
    return p;
}

static void expect_error(const uint8_t *bytes, size_t n, const char *needle)
{
    struct st_file f;
    tune_err err = {{0}};
    if (st_file_open_memory(&f, bytes, n, "bad.safetensors", &err) == 0)
        fail_msg("opened, expected \"%s\"", needle);
    if (!strstr(err.msg, needle) || strncmp(err.msg, "bad.safetensors: ", 17) ||
        strchr(err.msg, '\n'))
        fail_msg("expected \"%s\", got \"%s\"", needle, err.msg);
}

static void test_bad_headers(void **state)
{
    (void)state;
#define T(dt, shape, off) "{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":" off "}"
#define ONE(dt, shape, off) "{\"a\":" T(dt, shape, off) "}"
    static const struct {
        const char *header;
        size_t data;
        const char *needle;
    } cases[] = {
        {ONE("Q9", "[2]", "[0,8]"), 8, "tensor 'a': unknown dtype \"Q9\""},
        {ONE("bf16", "[4]", "[0,8]"), 8, "tensor 'a': unknown dtype \"bf16\""},
        {ONE("F32", "[3]", "[0,8]"), 8,
         "tensor 'a': data_offsets [0, 8] hold 8 bytes but F32 [3] needs 12"},
        {ONE("F32", "[2]", "[0,8]"), 4,
         "tensor 'a': data_offsets [0, 8] run past the data section (4 bytes)"},
        {"{\"a\":" T("F32", "[2]", "[0,8]") ",\"b\":" T("U8", "[4]", "[4,8]") "}", 8,
         "tensor 'b': data_offsets [4, 8] overlap tensor 'a'"},
        {"{\"a\":" T("F32", "[2]", "[0,8]") ",\"b\":" T("U8", "[4]", "[10,14]") "}", 14,
         "tensor 'b': data_offsets [10, 14] leave a hole after byte 8"},
        {ONE("F32", "[2]", "[4,12]"), 12,
         "tensor 'a': data_offsets [4, 12] leave a hole after byte 0"},
        {ONE("F32", "[2]", "[0,8]"), 12, "the tensors cover 8 bytes of a 12-byte data section"},
        {"{\"a\":" T("F32", "[2]", "[0,8]") ",\"a\":" T("F32", "[2]", "[8,16]") "}", 16,
         "tensor 'a': named twice"},
        {ONE("F32", "[0]", "[8,0]"), 8, "tensor 'a': data_offsets [8, 0] end before they begin"},
        {ONE("U8", "[1,1,1,1,1,1,1,1,1]", "[0,1]"), 1, "tensor 'a': rank 9 exceeds 8"},
        {ONE("U8", "[-1]", "[0,1]"), 1, "tensor 'a': shape[0] is not a non-negative integer"},
        {ONE("U8", "[1.5]", "[0,1]"), 1, "tensor 'a': shape[0] is not a non-negative integer"},
        {ONE("U8", "[4294967296,4294967296,4294967296]", "[0,1]"), 1,
         "tensor 'a': the product of the shape overflows"},
        {ONE("F64", "[4294967296,1073741824]", "[0,1]"), 1,
         "tensor 'a': the byte size of the shape overflows"},
        {ONE("U8", "[1]", "[0]"), 1, "tensor 'a': data_offsets is not [begin, end]"},
        {ONE("U8", "5", "[0,1]"), 1, "tensor 'a': shape is not an array"},
        {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "tensor 'a': missing dtype"},
        {"{\"a\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
         "tensor 'a': key 'dtype' appears twice"},
        {"{\"a\":5}", 0, "tensor 'a': expected an object"},
        {"{\"a\\nb\":" T("Q9", "[1]", "[0,1]") "}", 1, "tensor 'a\\nb': unknown dtype"},
        {"{\"__metadata__\":{\"k\":1}}", 0, "__metadata__: value of 'k' is not a string"},
        {"{\"__metadata__\":[]}", 0, "__metadata__ is not an object"},
        {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, "__metadata__ appears twice"},
        {"{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "__metadata__: key 'k' appears twice"},
        {"{\"a\":", 0, "header is not valid JSON"},
        {"{} x", 0, "header is not valid JSON"},
        {"[1,2]", 0, "header is not a JSON object"},
        {"{\"\xff\":1}", 0, "header byte 2 (0xff) is not valid UTF-8 JSON text"},
        {"{\"\xc0\xaf\":1}", 0, "header byte 2 (0xc0) is not valid UTF-8"}, /* overlong '/' */
        {"{\"a\x01\":1}", 0, "header byte 3 (0x01) is not valid UTF-8 JSON text"},
    };
#undef T
#undef ONE
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n;
        uint8_t *p = image(cases[i].header, cases[i].data, &n);
        expect_error(p, n, cases[i].needle);
        free(p);
    }
    /* The 8-byte length itself. */
    uint8_t raw[16] = {10, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    for (size_t n = 0; n < 8; n++)
        expect_error(raw, n, "too short for the 8-byte header length");
    expect_error(raw, 16, "header length 10 runs past the end of the file (16 bytes)");
    raw[0] = 0, raw[3] = 0x0c; /* 201326592 */
    expect_error(raw, 16, "header length 201326592 exceeds the limit of 100000000 bytes");
    memset(raw, 0xff, 8);
    expect_error(raw, 16, "exceeds the limit");
    /* A null __metadata__ is no metadata, as the reference's Option reads it. */
    struct st_file f;
    tune_err err;
    size_t n;
    uint8_t *p = image("{\"__metadata__\":null}  ", 0, &n);
    assert_int_equal(st_file_open_memory(&f, p, n, "null", &err), 0);
    assert_int_equal(f.n_meta + f.n_tensors, 0);
    st_file_close(&f);
    free(p);

    /* Through the file system. */
    char *dir = tmp_dir(), *path = join(dir, "cut.safetensors");
    spit(path, "\x40\0");
    assert_int_equal(st_file_open(&f, path, &err), -1);
    assert_non_null(strstr(err.msg, "cut.safetensors: file is 1 bytes, too short"));
    assert_int_equal(st_file_open(&f, dir, &err), -1);
    assert_non_null(strstr(err.msg, "not a regular file"));
    assert_int_equal(st_file_open(&f, "tests/fixtures/no/such.safetensors", &err), -1);
    assert_non_null(strstr(err.msg, "no/such.safetensors: cannot open"));
    free(path);
    dir_entries(dir, 1);
}

static void test_bad_index(void **state)
{
    (void)state;
    static const struct {
        const char *index, *needle;
    } cases[] = {
        {"{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\",\"c\":\"s2."
         "safetensors\",\"d\":\"s2.safetensors\"}}",
         "weight_map: tensor 'd' is not in shard 's2.safetensors'"},
        {"{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\",\"c\":\"s3."
         "safetensors\"}}",
         "shard 's3.safetensors': "},
        {"{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\",\"c\":\"s2."
         "safetensors\"}}",
         "weight_map: tensor 'b' is in "},
        {"{\"weight_map\":{\"a\":\"s1.safetensors\",\"c\":\"s2.safetensors\"}}",
         "s1.safetensors: tensor 'b': not in the weight_map of "},
        {"{\"weight_map\":{\"a\":\"s1.safetensors\",\"a\":\"s1.safetensors\",\"b\":\"s1."
         "safetensors\",\"c\":\"s2.safetensors\"}}",
         "weight_map: tensor 'a' is listed twice"},
        {"{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\",\"c\":\"s2."
         "safetensors\",\"x\":\"dup.safetensors\"}}",
         "tensor 'c': also in shard "},
        {"{\"weight_map\":{\"a\":\"../s1.safetensors\"}}",
         "tensor 'a': shard is not a file name in the folder"},
        {"{\"weight_map\":{\"a\":1}}", "tensor 'a': shard is not a file name in the folder"},
        {"{\"metadata\":{}}", "weight_map is missing or not an object"},
        {"{\"weight_map\":", "invalid JSON"},
    };
    struct st_writer w;
    struct st_model m;
    tune_err err;
    char *dir = tmp_dir(), *index = join(dir, ST_INDEX_NAME);
    assert_int_equal(st_model_open(&m, dir, &err), -1);
    assert_non_null(
        strstr(err.msg, "holds neither model.safetensors.index.json nor model.safetensors"));
    static const char *shards[][2] = {
        {"s1.safetensors", "a b"}, {"s2.safetensors", "c"}, {"dup.safetensors", "c x"}};
    int64_t shape[1] = {2};
    uint16_t data[2] = {1, 2};
    for (int s = 0; s < 3; s++) {
        st_writer_init(&w);
        for (const char *p = shards[s][1]; *p; p += p[1] ? 2 : 1) {
            char name[2] = {*p, 0};
            assert_int_equal(st_writer_add(&w, name, DTYPE_BF16, 1, shape, data, &err), 0);
        }
        char *path = join(dir, shards[s][0]);
        assert_int_equal(st_writer_write(&w, path, &err), 0);
        free(path);
        st_writer_free(&w);
    }
    spit(index, "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\",\"c\":\"s2."
                "safetensors\"}}");
    if (st_model_open(&m, dir, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(m.n_files, 2);
    st_model_close(&m);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        spit(index, cases[i].index);
        assert_int_equal(st_model_open(&m, dir, &err), -1);
        if (!strstr(err.msg, cases[i].needle) || strchr(err.msg, '\n'))
            fail_msg("expected \"%s\", got \"%s\"", cases[i].needle, err.msg);
    }
    free(index);
    dir_entries(dir, 1);
}

/* Reads every byte of every tensor, so ASan sees a range past the buffer. */
static uint64_t touch(const struct st_file *f)
{
    uint64_t s = 0;
    for (int i = 0; i < f->n_tensors; i++)
        s += fnv1a64(f->tensors[i].data, f->tensors[i].nbytes);
    return s;
}

static void test_mini_fuzz(void **state)
{
    (void)state;
    size_t n;
    uint8_t *good = slurp(FIXTURES "/single.safetensors", &n);
    struct st_file f;
    tune_err err;
    for (size_t len = 0; len <= n; len++) {
        uint8_t *p = malloc(len ? len : 1);
        memcpy(p, good, len);
        int rc = st_file_open_memory(&f, p, len, "cut", &err);
        assert_int_equal(rc, len == n ? 0 : -1); /* a cut always loses covered bytes */
        if (rc == 0) {
            touch(&f);
            st_file_close(&f);
        }
        free(p);
    }
    size_t header_end = 8 + (size_t)good[0] + ((size_t)good[1] << 8);
    uint64_t x = 0x9e3779b97f4a7c15ULL; /* xorshift64: the same flips on every run */
    int opened = 0;
    for (int iter = 0; iter < 500; iter++) {
        uint8_t *p = malloc(n);
        memcpy(p, good, n);
        for (int k = 0; k <= iter % 4; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            p[x % header_end] = (uint8_t)(x >> 32);
        }
        if (st_file_open_memory(&f, p, n, "flip", &err) == 0) {
            touch(&f);
            st_file_close(&f);
            opened++;
        } else {
            assert_true(err.msg[0] && !strchr(err.msg, '\n'));
        }
        free(p);
    }
    assert_true(opened < 500);
    free(good);
}

static void test_atomic_kill_mid_write(void **state)
{
    (void)state;
    char *dir = tmp_dir(), *path = join(dir, "model.safetensors");
    struct st_writer w;
    tune_err err;
    int64_t shape[1] = {4};
    st_writer_init(&w);
    assert_int_equal(st_writer_add(&w, "old", DTYPE_U8, 1, shape, "abcd", &err), 0);
    assert_int_equal(st_writer_write(&w, path, &err), 0);
    st_writer_free(&w);
    size_t n0, n1;
    uint8_t *before = slurp(path, &n0);

    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) { /* the writer dies between two writes */
        struct atomic_file af;
        if (atomic_file_open(&af, path, NULL) == 0 &&
            atomic_file_write(&af, "partial", 7, NULL) == 0)
            raise(SIGKILL);
        _exit(1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    uint8_t *after = slurp(path, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    struct st_file f;
    assert_int_equal(st_file_open(&f, path, &err), 0);
    assert_memory_equal(st_file_find(&f, "old")->data, "abcd", 4);
    st_file_close(&f);
    assert_int_equal(dir_entries(dir, 0), 2); /* the file and the dead writer's temporary */

    /* An abort removes its temporary file and leaves the target alone. */
    struct atomic_file af;
    assert_int_equal(atomic_file_open(&af, path, &err), 0);
    assert_int_equal(atomic_file_write(&af, "x", 1, &err), 0);
    atomic_file_abort(&af);
    atomic_file_abort(&af);
    assert_int_equal(dir_entries(dir, 0), 2);
    assert_int_equal(atomic_file_save(path, "new", 3, &err), 0);
    free(after);
    after = slurp(path, &n1);
    assert_int_equal(n1, 3);
    assert_int_equal(atomic_file_save("/nonexistent-dir/x", "new", 3, &err), -1);
    assert_non_null(strstr(err.msg, "/nonexistent-dir/x: cannot create a temporary file"));
    char *sub = join(dir, "sub"); /* rename cannot replace a directory */
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_int_equal(atomic_file_save(sub, "new", 3, &err), -1);
    assert_non_null(strstr(err.msg, "sub: cannot rename"));
    assert_int_equal(dir_entries(dir, 0), 3);
    rmdir(sub);
    free(sub);
    free(before);
    free(after);
    free(path);
    dir_entries(dir, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_every_dtype),
        cmocka_unit_test(test_python_fixtures),
        cmocka_unit_test(test_sharded_fixture),
        cmocka_unit_test(test_sharded_writer),
        cmocka_unit_test(test_made_tensors),
        cmocka_unit_test(test_writer_refuses),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_bad_index),
        cmocka_unit_test(test_mini_fuzz),
        cmocka_unit_test(test_atomic_kill_mid_write),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
