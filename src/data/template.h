/* Field templates: how a prompt and a completion are built from a record of any shape, for
 * datasets that are not {"text"}, {"prompt", "completion"} or {"messages"} (the grading
 * records of ../shared/seeds). The template file is JSON, so whitespace and newlines are
 * exact ("\n" is a newline, nothing is trimmed):
 *
 *   {"comment":    "anything; ignored",
 *    "prompt":     "...",        the text the model reads: no loss
 *    "completion": "..."}        the text it learns to write: loss
 *   or {"text": "..."}           one text, loss on all of it
 *
 * In the strings:
 *   {name} {a.b} {list[0].x}  the value at that path of the record
 *   {name?}                   the same, but nothing when it is missing or null
 *   {#each list}...{/each}    the body once per item of the list (nothing for []); in the
 *                             body a name is looked up in the item first, then outwards in
 *                             the enclosing items and the record, so {score} is the item's
 *                             score and {feedback} the record's. {#each list?} allows a
 *                             missing or null list. Bodies nest.
 *   {.}                       the current item itself (a list of strings)
 *   {@index} {@number}        the current item's position from 0 and from 1
 *   {{ and }}                 a literal { and }
 * Keys containing '.', '[', ']', '{', '}' cannot be named.
 *
 * Values print as Python's str() prints what json.load gives, so a template renders as the
 * seeds' f-strings do: strings as they are, numbers 11 and 0.37 (shortest repr), true/false
 * as True/False; lists and objects as JSON (json.dumps layout). One difference: cJSON keeps
 * no integer/float distinction, so a JSON 2.0 prints "2" where Python prints "2.0". A
 * missing field, or a null one without '?', is an error naming the field.
 *
 * Example for the seeds' grading records (score, max_score, normalized_score,
 * rubric_alignment[question, answer, score, max_score], feedback), as in
 * tests/fixtures/data/grading.template.json:
 *
 *   {"prompt": "Grade the answers.\n{#each rubric_alignment}Q{@number}: {question}\n"
 *              "A: {answer}\n({max_score} points)\n{/each}",
 *    "completion": "Score: {score}/{max_score}\nFeedback: {feedback?}"}
 *
 * (JSON has no string concatenation; the file writes each string on one line.) */
#ifndef TUNE_DATA_TEMPLATE_H
#define TUNE_DATA_TEMPLATE_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "base/error.h"

struct data_template;

/* Loads and checks a template file (syntax errors name the file, the string and the column:
 * "t.json: prompt: column 12: {#each} without {/each}"). */
int data_template_load(struct data_template **out, const char *path, tune_err *err);

/* The same from strings; prompt may be NULL (a text template: all of completion is trained).
 * origin names the template in errors. */
int data_template_parse(struct data_template **out, const char *prompt, const char *completion,
                        const char *origin, tune_err *err);

void data_template_free(struct data_template *t);

/* Renders a record into *prompt and *completion (malloc'd, NUL-terminated; the caller frees
 * both, also after a failure, when they may be NULL). A text template gives "" as prompt.
 * Errors name the template string and field: "completion: field 'feedback' is missing",
 * "prompt: field 'answer' is missing (in rubric_alignment[2])". */
int data_template_render(const struct data_template *t, const cJSON *record, char **prompt,
                         char **completion, tune_err *err);

#endif
