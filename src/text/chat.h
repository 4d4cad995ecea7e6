/* Chat formats: a conversation rendered to the exact text a model's own chat template gives
 * for training (transformers' apply_chat_template(messages, tokenize=False,
 * add_generation_prompt=False)), plus the byte spans of the text the model should learn to
 * write (the loss mask). Each format is written in C from its template, not by running
 * Jinja; tests/test_chat.c compares it byte for byte with the template's output
 * (tools/ref/make_chat_fixtures.py, which names the template sources).
 *
 * Special tokens stay literal text ("<|start|>", "<|eot_id|>", "</s>"): the tokenizer
 * matches them as added tokens. Where a template writes the BOS token (llama3, mistral) the
 * text starts with it, so tokenize without adding another.
 *
 * Loss spans: the part of each assistant turn that the model writes after the generation
 * prompt, through its end marker:
 *   harmony  everything after "<|start|>assistant": the channel header, the last turn's
 *            analysis (thinking), tool calls (" to=functions.NAME<|channel|>commentary
 *            json<|message|>ARGS<|call|>") and the final answer, through <|return|> (last
 *            message), <|end|> (earlier answers, as the template renders history) or <|call|>.
 *            Consecutive assistant messages form one span: the model writes the
 *            "<|start|>assistant" between its own messages.
 *   llama3   content (trimmed, as the template trims it) + "<|eot_id|>"; a tool call is the
 *            {"name": ..., "parameters": ...} JSON + "<|eot_id|>".
 *   chatml   content (and tool calls) + "<|im_end|>", not the "\n" the template adds after.
 *   mistral  " " + content + "</s>": the space is the one SentencePiece folds into the
 *            answer's first token. */
#ifndef TUNE_TEXT_CHAT_H
#define TUNE_TEXT_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "base/error.h"

enum chat_format {
    CHAT_FORMAT_HARMONY, /* gpt-oss: openai/gpt-oss-20b / -120b chat_template.jinja */
    CHAT_FORMAT_LLAMA3,  /* Llama 3.1: meta-llama/Llama-3.1-8B-Instruct, without tool schemas */
    CHAT_FORMAT_CHATML,  /* Qwen2.5: Qwen/Qwen2.5-7B-Instruct, without tool schemas */
    CHAT_FORMAT_MISTRAL, /* Mistral-7B-Instruct-v0.2's template (mistralai "v1" with system) */
    CHAT_FORMAT_COUNT
};

enum chat_role {
    CHAT_ROLE_SYSTEM,
    CHAT_ROLE_DEVELOPER, /* harmony only (gpt-oss's name for the system prompt) */
    CHAT_ROLE_USER,
    CHAT_ROLE_ASSISTANT,
    CHAT_ROLE_TOOL, /* a tool's result; llama3 renders it as "ipython" */
    CHAT_ROLE_COUNT
};

/* One function call made by an assistant message. */
struct chat_tool_call {
    const char *name;      /* NULL: the message makes no call */
    const char *arguments; /* JSON text as the templates print it (Python json.dumps layout);
                              chat_messages_from_json makes it */
};

struct chat_message {
    enum chat_role role;
    const char *content;  /* NULL only on an assistant message that makes a tool call */
    const char *thinking; /* assistant reasoning, NULL: none. Only harmony has a place for it
                             (analysis channel); the others refuse it rather than drop it */
    struct chat_tool_call tool_call; /* assistant only; at most one call per message */
};

struct chat_options {
    const char *date;             /* "YYYY-MM-DD". NULL: the template's own default, which is
                                     today's local date for harmony and "26 Jul 2024" for llama3 */
    const char *reasoning_effort; /* harmony: "low", "medium", "high"; NULL: "medium" */
    const char *model_identity;   /* harmony: NULL: "You are ChatGPT, a large language model
                                     trained by OpenAI." */
};

struct chat_span {
    size_t start, end; /* byte offsets into chat_text.text, [start, end) */
};

struct chat_text {
    char *text; /* NUL-terminated, malloc'd */
    size_t len;
    struct chat_span *spans; /* loss spans in increasing order, non-overlapping */
    size_t n_spans;
};

/* Parses a format name: "harmony", "llama3", "chatml", "mistral". */
int chat_format_parse(const char *name, enum chat_format *out, tune_err *err);
const char *chat_format_name(enum chat_format format);

/* Picks the format a model's template uses from config.json's model_type and vocabulary
 * size: gpt_oss -> harmony, qwen2 -> chatml, llama with the Llama 3 vocabulary (128256) ->
 * llama3, mistral with the 32000 vocabulary of v0.1/v0.2 -> mistral. Any other model (Llama
 * 2, Mistral v0.3, ...) is an error that says so: its template is not built in. */
int chat_format_for_model(const char *model_type, int64_t vocab, enum chat_format *out,
                          tune_err *err);

const char *chat_role_name(enum chat_role role);

/* Fails unless effort is NULL or one of harmony's reasoning efforts: "low", "medium", "high". */
int chat_effort_check(const char *effort, tune_err *err);

/* What the format's template appends for add_generation_prompt=True: the opening of the
 * model's turn ("<|start|>assistant" in harmony; "" in mistral, whose text ends open). */
const char *chat_generation_prompt(enum chat_format format);

/* The ids of the tokens the model ends its turn with, those the tokenizer has: harmony's
 * <|return|> (the final answer) and <|call|> (a tool call), llama3's <|eot_id|>, chatml's
 * <|im_end|>, mistral's </s>. Returns how many. */
enum { CHAT_MAX_TURN_ENDS = 3 };
struct tokenizer;
int chat_turn_end_ids(enum chat_format format, const struct tokenizer *tok, int32_t ids[CHAT_MAX_TURN_ENDS]);

/* Fails, naming the token, when tok lacks one of the special tokens the format writes as
 * literal text (harmony's <|start|>, llama3's <|eot_id|>, ...): rendered through such a
 * tokenizer they would become ordinary text the model was never trained on. */
int chat_check_tokenizer(enum chat_format format, const struct tokenizer *tok, tune_err *err);

/* Renders n messages in the given format into *out (which the caller frees with
 * chat_text_free, also after a failure). opt may be NULL for every default. Fails, naming
 * the message ("messages[3]: ..."), where the template would raise or where it would
 * silently drop what the message says: a role the format has no place for (developer outside
 * harmony, system after the first message in harmony and mistral), thinking outside harmony,
 * mistral turns that do not alternate user/assistant, a harmony tool result without a call
 * before it. Does not tokenize and does not check that contents are valid UTF-8. */
int chat_render(enum chat_format format, const struct chat_message *msgs, size_t n,
                const struct chat_options *opt, struct chat_text *out, tune_err *err);
void chat_text_free(struct chat_text *t);

/* Messages read from a dataset record. Strings point into the cJSON tree, which must
 * outlive them, except tool-call arguments, which are owned here. */
struct chat_messages {
    struct chat_message *items;
    size_t count;
    char **owned; /* count entries, NULL or the arguments text of items[i] */
};

/* Reads a `messages` array of {"role", "content", ...} objects, as transformers takes
 * them: "thinking" (or "reasoning_content", "reasoning") for assistant reasoning, and
 * "tool_calls": [{"function": {"name", "arguments"}}] with one call. Errors name the entry
 * and field: "messages[2].role: unknown role 'bot'". Content must be a string (lists of
 * parts are not supported). *out is freed with chat_messages_free, also after a failure. */
int chat_messages_from_json(const cJSON *messages, struct chat_messages *out, tune_err *err);
void chat_messages_free(struct chat_messages *m);

/* Prints v as Python's json.dumps(v, ensure_ascii=False) does (the templates' tojson),
 * into a malloc'd string; NULL when out of memory. cJSON keeps no integer/float
 * distinction: integral numbers below 2^53 print as integers ("2.0" prints as "2"), others
 * as Python's repr of the double. */
char *chat_json_dump(const cJSON *v);

#endif
