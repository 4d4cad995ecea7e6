/* Subcommand entry points: each returns the process exit status. */
#ifndef TUNE_CLI_COMMANDS_H
#define TUNE_CLI_COMMANDS_H

int cmd_plan(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_generate(int argc, char **argv);

#endif
