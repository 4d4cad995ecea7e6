/* See model_files.h. */
#include "cli/model_files.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "io/json.h"

int model_load_tokenizer(const char *model_dir, struct tokenizer **tok, tune_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", model_dir);
    return tok_load(tok, path, err);
}

/* eos_token_id as an int or a list of ints. */
static int ids_from(const cJSON *v, int32_t ids[MODEL_MAX_EOS])
{
    if (cJSON_IsNumber(v)) {
        ids[0] = (int32_t)v->valuedouble;
        return 1;
    }
    int n = 0;
    const cJSON *it, *list = cJSON_IsArray(v) ? v : NULL;
    cJSON_ArrayForEach(it, list)
        if (cJSON_IsNumber(it) && n < MODEL_MAX_EOS)
            ids[n++] = (int32_t)it->valuedouble;
    return n;
}

int model_eos_ids(const char *model_dir, const struct tokenizer *tok, int32_t ids[MODEL_MAX_EOS], tune_err *err)
{
    static const char *const files[] = {"generation_config.json", "tokenizer_config.json", "config.json"};
    char path[4096];
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        snprintf(path, sizeof path, "%s/%s", model_dir, files[f]);
        if (access(path, R_OK) != 0)
            continue;
        cJSON *root = json_load_file(path, 16 << 20, err);
        if (!root)
            return -1;
        int n = ids_from(cJSON_GetObjectItemCaseSensitive(root, "eos_token_id"), ids);
        const cJSON *tokv = cJSON_GetObjectItemCaseSensitive(root, "eos_token");
        if (!n && cJSON_IsObject(tokv))
            tokv = cJSON_GetObjectItemCaseSensitive(tokv, "content");
        if (!n && cJSON_IsString(tokv) && (ids[0] = tok_token_to_id(tok, tokv->valuestring)) >= 0)
            n = 1;
        cJSON_Delete(root);
        if (n)
            return n;
    }
    return err_set(err, "%s: no eos_token_id in generation_config.json, tokenizer_config.json or config.json",
                   model_dir);
}
