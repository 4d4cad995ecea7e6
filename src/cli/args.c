/* See args.h. */
#include "cli/args.h"

#include <string.h>

int cli_next(struct cli_args *a, const struct cli_opt *opts, int n_opts, const char **value,
             tune_err *err)
{
    if (a->next >= a->argc)
        return -1;
    const char *tok = a->argv[a->next++];
    if (strncmp(tok, "--", 2) != 0) {
        for (int i = 0; i < n_opts; i++)
            if (!opts[i].name[0]) {
                *value = tok;
                return i;
            }
        return err_set(err, "unexpected argument '%s'", tok), -2;
    }
    const char *eq = strchr(tok, '=');
    size_t len = eq ? (size_t)(eq - tok) : strlen(tok);
    for (int i = 0; i < n_opts; i++) {
        if (strlen(opts[i].name) != len || strncmp(opts[i].name, tok, len) != 0)
            continue;
        if (!opts[i].arg) {
            if (eq)
                return err_set(err, "%s takes no value", opts[i].name), -2;
            *value = NULL;
            return i;
        }
        if (eq) {
            *value = eq + 1;
        } else if (a->next < a->argc) {
            *value = a->argv[a->next++];
        } else {
            return err_set(err, "%s needs a value (%s)", opts[i].name, opts[i].arg), -2;
        }
        return i;
    }
    return err_set(err, "unknown option '%.*s' (see --help)", (int)len, tok), -2;
}

void cli_print_help(FILE *out, const char *usage, const char *about, const struct cli_opt *opts,
                    int n_opts)
{
    fprintf(out, "usage: %s\n\n%s\n\noptions:\n", usage, about);
    for (int i = 0; i < n_opts; i++) {
        if (!opts[i].name[0])
            continue;
        char left[64];
        snprintf(left, sizeof left, "%s%s%s", opts[i].name, opts[i].arg ? " " : "",
                 opts[i].arg ? opts[i].arg : "");
        fprintf(out, "  %-26s %s\n", left, opts[i].help);
    }
}
