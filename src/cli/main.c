/* tune: one program, subcommands dispatched from one table (git's way). */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *about;
} commands[] = {
    {"plan", cmd_plan, "per-GPU memory of a training run, whether it fits, what to rent"},
    {"inspect", cmd_inspect, "a model's spec and parameter count by component"},
    {"tokenize", cmd_tokenize, "the ids of a text; a dataset's examples, tokens and loss mask"},
    {"train", cmd_train, "LoRA fine-tuning (CPU today), with checkpoints and exact resume"},
    {"eval", cmd_eval, "mean loss and perplexity of a model (and adapter) on a dataset"},
    {"generate", cmd_generate, "continue a prompt over a KV cache"},
    {"merge", cmd_merge, "fold a LoRA adapter into its base model"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: tune <command> [options]   (tune <command> --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].about);
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].fn(argc - 2, argv + 2);
    fprintf(stderr, "tune: unknown command '%s' (tune --help lists the commands)\n", argv[1]);
    return 2;
}
