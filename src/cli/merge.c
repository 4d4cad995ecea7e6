/* tune merge: folds a LoRA adapter into its base model and writes a plain
 * Hugging Face model folder. */
#include <stdio.h>

#include "base/units.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "model/merge.h"

enum { OPT_MODEL, OPT_ADAPTER, OPT_OUTPUT, OPT_SHARD, OPT_HELP, OPT_COUNT };

static const struct cli_opt merge_opts[] = {
    [OPT_MODEL] = {"--model", "DIR", "the base model folder (config.json + safetensors)"},
    [OPT_ADAPTER] = {"--adapter", "DIR", "the adapter folder (adapter_config.json + adapter_model.safetensors)"},
    [OPT_OUTPUT] = {"--output", "DIR", "where to write the merged model"},
    [OPT_SHARD] = {"--max-shard-size", "BYTES", "largest safetensors shard (default 5GB)"},
    [OPT_HELP] = {"--help", NULL, "show this help"},
};

int cmd_merge(int argc, char **argv)
{
    struct cli_args a = {argc, 0, argv};
    const char *v, *model = NULL, *adapter = NULL, *output = NULL;
    int64_t shard = 5000000000LL;
    tune_err err;
    int i;
    while ((i = cli_next(&a, merge_opts, OPT_COUNT, &v, &err)) >= 0) {
        switch (i) {
        case OPT_MODEL: model = v; break;
        case OPT_ADAPTER: adapter = v; break;
        case OPT_OUTPUT: output = v; break;
        case OPT_SHARD:
            if (units_parse_bytes(v, "--max-shard-size", &shard, &err)) {
                fprintf(stderr, "tune merge: %s\n", err.msg);
                return 2;
            }
            break;
        default:
            cli_print_help(stdout, "tune merge --model DIR --adapter DIR --output DIR",
                           "Writes W + (alpha / r) B A for every adapted weight, in the base's dtype, as a model "
                           "folder transformers loads.", merge_opts, OPT_COUNT);
            return 0;
        }
    }
    if (i == -2 || !model || !adapter || !output) {
        fprintf(stderr, "tune merge: %s\n", i == -2 ? err.msg : "--model, --adapter and --output are required");
        return 2;
    }
    if (merge_lora(model, adapter, output, shard, &err)) {
        fprintf(stderr, "tune merge: %s\n", err.msg);
        return 1;
    }
    printf("merged %s + %s -> %s\n", model, adapter, output);
    return 0;
}
