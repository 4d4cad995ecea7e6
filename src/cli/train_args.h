/* The flags of tune train (also read from a --config YAML file and from a
 * run's saved training_args.json on --resume), parsed into the run, the
 * trainer's settings and the data settings. */
#ifndef TUNE_CLI_TRAIN_ARGS_H
#define TUNE_CLI_TRAIN_ARGS_H

#include <stdbool.h>

#include "cli/device.h"
#include "model/spec.h"
#include "plan/run.h"
#include "train/trainer.h"

struct train_args {
    const char *model, *data, *template_path, *chat_format, *output, *resume, *config;
    const char *chat_date; /* --chat-date, or the day a harmony run started (saved for --resume) */
    const char *reasoning_effort; /* harmony's, or NULL */
    struct model_spec spec;
    struct run_config rc;
    struct train_config tc;
    struct device_choice device; /* resolved: never auto */
    double eval_split;
    bool no_graphs; /* --no-cuda-graphs */
    bool help;
    char **all; /* the config file's flags (owned: n_config), then the command line's */
    int n_all, n_config;
};

/* Parses argv (after "train"); a --config file's keys (the long flag names)
 * come first so that flags override them. Loads the model's spec. */
int train_args_parse(struct train_args *a, int argc, char **argv, tune_err *err);
void train_args_help(void);
/* Writes the effective arguments (a --config file's included) to
 * OUTPUT/training_args.json, which --resume reads back. */
int train_args_save(const struct train_args *a, tune_err *err);
/* Reads RUN/training_args.json for a checkpoint RUN/checkpoint-N into an argv. */
int train_args_load_saved(const char *checkpoint, char ***argv, int *argc, tune_err *err);

#endif
