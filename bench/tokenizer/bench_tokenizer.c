/* Tokenizer encode throughput on one thread: the time tok_encode takes over a list of
 * documents, nothing else (no process start, no file reading, no printing). Run by
 * tools/bench_tokenizer.py beside Hugging Face tokenizers and tiktoken on the same documents;
 * the checksum of the ids lets it check that all of them produced the same ids.
 *
 *   bench_tokenizer --json TOKENIZER.json DOCS.jsonl [--repeat N]
 *   bench_tokenizer --tiktoken RANKS.tiktoken ENCODING DOCS.jsonl [--repeat N]
 *
 * DOCS.jsonl holds one JSON string per line. Each document is encoded without the
 * post-processor (no BOS), special tokens recognised, as tokenizers' encode(doc,
 * add_special_tokens=False) does. One untimed pass warms the caches, then N timed passes
 * (default 3); the fastest is reported, in the thread's CPU time (cpu_seconds: what other
 * processes on a shared machine take does not count) and in wall time (seconds). Prints one
 * JSON object:
 *   {"docs": D, "bytes": B, "tokens": T, "seconds": S, "cpu_seconds": C, "checksum": "HEX"}
 * where checksum folds every id of every document, in order: h = h * 1000003 + id + 1 over
 * 64 bits, and h = h * 1000003 between documents. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "text/tokenizer.h"

struct doc {
    const char *text;
    size_t len;
};

static double now(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Reads the documents: each line a JSON string. The cJSON items own the texts. */
static int read_docs(const char *path, cJSON ***items, struct doc **docs, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "bench_tokenizer: cannot open %s\n", path);
        return -1;
    }
    char *line = NULL;
    size_t cap = 0, lineno = 0, have = 0;
    ssize_t got;
    *items = NULL;
    *docs = NULL;
    *n = 0;
    while ((got = getline(&line, &cap, f)) > 0) {
        lineno++;
        cJSON *v = cJSON_Parse(line);
        if (!cJSON_IsString(v)) {
            fprintf(stderr, "bench_tokenizer: %s:%zu: not a JSON string\n", path, lineno);
            cJSON_Delete(v);
            free(line);
            fclose(f);
            return -1;
        }
        if (*n == have) {
            have = have ? 2 * have : 1024;
            *items = realloc(*items, have * sizeof **items);
            *docs = realloc(*docs, have * sizeof **docs);
            if (!*items || !*docs) {
                fprintf(stderr, "bench_tokenizer: out of memory\n");
                exit(1);
            }
        }
        (*items)[*n] = v;
        (*docs)[*n] = (struct doc){v->valuestring, strlen(v->valuestring)};
        (*n)++;
    }
    free(line);
    fclose(f);
    return 0;
}

/* One pass over every document; returns the tokens, folds the ids into *checksum. */
static int64_t encode_all(const struct tokenizer *tok, const struct doc *docs, size_t n, struct tok_ids *ids,
                          uint64_t *checksum)
{
    int64_t tokens = 0;
    uint64_t h = 0;
    for (size_t i = 0; i < n; i++) {
        tune_err err;
        ids->n = 0;
        if (tok_encode(tok, docs[i].text, docs[i].len, 0, ids, &err) != 0) {
            fprintf(stderr, "bench_tokenizer: document %zu: %s\n", i, err.msg);
            exit(1);
        }
        tokens += (int64_t)ids->n;
        if (checksum) {
            for (size_t k = 0; k < ids->n; k++)
                h = h * 1000003u + (uint64_t)ids->v[k] + 1u;
            h *= 1000003u;
        }
    }
    if (checksum)
        *checksum = h;
    return tokens;
}

int main(int argc, char **argv)
{
    struct tokenizer *tok = NULL;
    tune_err err;
    int a = 1, repeat = 3;
    if (argc >= 4 && strcmp(argv[1], "--json") == 0 && tok_load(&tok, argv[2], &err) == 0) {
        a = 3;
    } else if (argc >= 5 && strcmp(argv[1], "--tiktoken") == 0 &&
               tok_load_tiktoken(&tok, argv[2], argv[3], &err) == 0) {
        a = 4;
    } else {
        if (tok)
            tok_free(tok);
        if (argc >= 3 && (strcmp(argv[1], "--json") == 0 || strcmp(argv[1], "--tiktoken") == 0))
            fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
        else
            fprintf(stderr, "usage: bench_tokenizer (--json TOKENIZER.json | --tiktoken RANKS ENCODING) "
                            "DOCS.jsonl [--repeat N]\n");
        return 2;
    }
    const char *docs_path = argv[a++];
    if (a + 1 < argc && strcmp(argv[a], "--repeat") == 0)
        repeat = atoi(argv[a + 1]) > 0 ? atoi(argv[a + 1]) : 1;
    cJSON **items;
    struct doc *docs;
    size_t n;
    if (read_docs(docs_path, &items, &docs, &n) != 0)
        return 1;
    int64_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += (int64_t)docs[i].len;
    struct tok_ids ids = {0};
    uint64_t checksum = 0;
    int64_t tokens = encode_all(tok, docs, n, &ids, &checksum); /* warm-up, and the ids */
    double best = 1e30, best_cpu = 1e30;
    for (int r = 0; r < repeat; r++) {
        double t0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_THREAD_CPUTIME_ID);
        encode_all(tok, docs, n, &ids, NULL);
        double c = now(CLOCK_THREAD_CPUTIME_ID) - c0, t = now(CLOCK_MONOTONIC) - t0;
        best = t < best ? t : best;
        best_cpu = c < best_cpu ? c : best_cpu;
    }
    printf("{\"docs\": %zu, \"bytes\": %lld, \"tokens\": %lld, \"seconds\": %.6f, \"cpu_seconds\": %.6f, "
           "\"checksum\": \"%016llx\"}\n", n, (long long)bytes, (long long)tokens, best, best_cpu,
           (unsigned long long)checksum);
    tok_ids_free(&ids);
    for (size_t i = 0; i < n; i++)
        cJSON_Delete(items[i]);
    free(items);
    free(docs);
    tok_free(tok);
    return 0;
}
