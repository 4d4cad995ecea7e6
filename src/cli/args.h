/* Flag parsing for subcommands: each declares a table of options, and the same
 * table drives parsing and the --help text, so they cannot drift apart. */
#ifndef TUNE_CLI_ARGS_H
#define TUNE_CLI_ARGS_H

#include <stdio.h>

#include "base/error.h"

struct cli_opt {
    const char *name; /* "--seq" */
    const char *arg;  /* "N" for an option that takes a value, NULL for a switch */
    const char *help;
};

struct cli_args {
    int argc, next;
    char **argv;
};

/* Returns the index in opts of the next flag and sets *value (NULL for a
 * switch); returns -1 at the end, -2 on an error (unknown flag, missing value,
 * stray positional) with err set. Accepts "--name value" and "--name=value".
 * A positional argument is returned as the option named "" if the table has one. */
int cli_next(struct cli_args *a, const struct cli_opt *opts, int n_opts, const char **value,
             tune_err *err);

void cli_print_help(FILE *out, const char *usage, const char *about, const struct cli_opt *opts,
                    int n_opts);

/* Help of the run options `tune plan` and `tune train` share. */
#define EXPERT_LAYERS_HELP                                                                                            \
    "the experts' LoRA only on these layers, e.g. 7,15,23 (gpt-oss; default: where the other targets are)"
#define OFFLOAD_CKPT_HELP "with --grad-ckpt full: the layers' inputs in CPU memory, sent back as backward needs them"
#define CKPT_KEEP_HELP "with --grad-ckpt full: the last N layers keep their activations, not recomputed (default 0)"

#endif
