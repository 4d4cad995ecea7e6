/* tune: one program, subcommands dispatched from one table (git's way). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* OpenBLAS picks its GEMM kernels from the CPU's model number at load time;
 * on virtual machines that report a generic "Intel Xeon Processor" it falls
 * back to its oldest x86-64 kernels (Prescott), measured 1.5x slower here.
 * When the user has not chosen, name the core from the CPU's features and
 * start again, before OpenBLAS is used. */
static void pick_blas_core(char **argv)
{
    if (getenv("OPENBLAS_CORETYPE"))
        return;
    const char *core = __builtin_cpu_supports("avx512f") ? "SkylakeX"
                       : __builtin_cpu_supports("avx2")  ? "Haswell"
                                                         : "";
    if (setenv("OPENBLAS_CORETYPE", core, 0) == 0 && core[0])
        execv("/proc/self/exe", argv); /* on failure, go on with OpenBLAS's own choice */
}

int main(int argc, char **argv)
{
    pick_blas_core(argv);
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
