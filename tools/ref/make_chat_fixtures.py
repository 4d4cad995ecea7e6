#!/usr/bin/env python3
"""Makes the chat format fixtures of tests/test_chat.c (tests/fixtures/chat/<format>.json).

Each conversation is rendered by the model's own chat template with jinja2, set up exactly as
transformers' apply_chat_template sets it up (ImmutableSandboxedEnvironment, trim_blocks,
lstrip_blocks, loopcontrols, json.dumps as tojson with ensure_ascii=False, raise_exception,
strftime_now; add_generation_prompt=False, the training case). When transformers is importable
the same text is also rendered through transformers' own render_jinja_template and must agree.
Every gpt-oss conversation is also rendered by openai-harmony (render_conversation_for_training),
which must give the template's text (apart from one known difference, see harmony_messages); its
token ids go into the case as "harmony_ids", which tune's render tokenized with o200k_harmony
must equal (tests/test_chat.c; make_tokenizer_fixtures.py keeps the tokens these texts need in
the o200k_harmony subset, so run it after this script).

The expected loss spans are found in the rendered text by the rule each format documents in
src/text/chat.h, written here independently of the C code (string search, not message walking).

Templates (tools/ref/chat_templates/, copied byte for byte):
  gpt-oss.jinja       openai/gpt-oss-120b (and -20b, same file) chat_template.jinja on the
                      Hugging Face hub, as llama.cpp vendors it: ggml-org/llama.cpp
                      models/templates/openai-gpt-oss-120b.jinja (commit 1eeb523c of a mirror,
                      Sep 2025; the revision with "<|call|>" and future_final_message).
  llama-3.1.jinja     meta-llama/Llama-3.1-8B-Instruct tokenizer_config.json chat_template, as
                      ggml-org/llama.cpp models/templates/meta-llama-Llama-3.1-8B-Instruct.jinja.
  qwen2.5.jinja       Qwen/Qwen2.5-7B-Instruct tokenizer_config.json chat_template, as
                      ggml-org/llama.cpp models/templates/Qwen-Qwen2.5-7B-Instruct.jinja.
  mistral-v0.2.jinja  mistralai/Mistral-7B-Instruct-v0.2 tokenizer_config.json chat_template (the
                      mistralai "v1" template with an optional system prompt, 2024), as quoted in
                      ggml-org/llama.cpp tests/test-chat-template.cpp and printed by vLLM as that
                      model's default template.
bos_token: "<|begin_of_text|>" (Llama 3.1), "<s>" (Mistral); eos_token "</s>" (Mistral).

Setup:  python3 -m venv tools/ref/.venv
        tools/ref/.venv/bin/pip install jinja2 openai-harmony bpe-openai transformers
Run:    tools/ref/.venv/bin/python tools/ref/make_chat_fixtures.py   (from the repo root)
openai-harmony needs the o200k_base rank file and would download it; the script points
TIKTOKEN_ENCODINGS_BASE at a copy of the one the bpe-openai package carries, so it runs offline
(without openai-harmony or bpe-openai the harmony_ids are left out, saying so).
"""
import datetime
import gzip
import importlib.util
import json
import os
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

TEMPLATES = "tools/ref/chat_templates"
OUT = "tests/fixtures/chat"


def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
    return env


def template_kwargs(fmt, options):
    """What the template sees besides the messages, from a case's options (see test_chat.c)."""
    kw = {"add_generation_prompt": False}
    date = options.get("date")
    if fmt == "harmony":
        if date:
            fixed = datetime.datetime.strptime(date, "%Y-%m-%d")
            kw["strftime_now"] = lambda f: fixed.strftime(f)
        if "reasoning_effort" in options:
            kw["reasoning_effort"] = options["reasoning_effort"]
        if "model_identity" in options:
            kw["model_identity"] = options["model_identity"]
    elif fmt == "llama3":
        kw["bos_token"] = "<|begin_of_text|>"
        if date:
            kw["date_string"] = datetime.datetime.strptime(date, "%Y-%m-%d").strftime("%d %b %Y")
    elif fmt == "mistral":
        kw["bos_token"] = "<s>"
        kw["eos_token"] = "</s>"
    return kw


def template_messages(messages):
    """Dataset messages as a template sees them: transformers 5 copies reasoning_content or
    reasoning into `thinking`; we do the same in chat_messages_from_json."""
    out = []
    for m in messages:
        m = dict(m)
        for key in ("reasoning_content", "reasoning"):
            if m.get(key) is not None and "thinking" not in m:
                m["thinking"] = m[key]
        out.append(m)
    return out


# ---- expected spans, by each format's rule (src/text/chat.h) --------------------------------

def spans_after(text, prompt, ends):
    """Every occurrence of `prompt` opens a span that closes after the first of `ends`."""
    spans, pos = [], 0
    while (p := text.find(prompt, pos)) >= 0:
        start = p + len(prompt)
        hits = [(text.find(e, start), e) for e in ends]
        hits = [(i, e) for i, e in hits if i >= 0]
        if not hits:
            break
        i, e = min(hits)
        spans.append([start, i + len(e)])
        pos = i + len(e)
    return spans


def expected_spans(fmt, text):
    if fmt == "llama3":
        return spans_after(text, "<|start_header_id|>assistant<|end_header_id|>\n\n", ["<|eot_id|>"])
    if fmt == "chatml":
        return spans_after(text, "<|im_start|>assistant\n", ["<|im_end|>"])
    if fmt == "mistral":
        # After " [/INST]" the model writes " answer</s>"; a conversation ending on a user turn
        # has no answer after its last [/INST].
        spans = []
        for s, e in spans_after(text, " [/INST]", ["</s>", " [INST] "]):
            if text[e - 4:e] == "</s>":
                spans.append([s, e])
        return spans
    # harmony: the model writes everything after "<|start|>assistant" up to its end marker, and
    # the "<|start|>assistant" between its consecutive messages too.
    spans = spans_after(text, "<|start|>assistant", ["<|end|>", "<|return|>", "<|call|>"])
    merged = []
    for s in spans:
        if merged and text[merged[-1][1]:s[0]] == "<|start|>assistant":
            merged[-1][1] = s[1]
        else:
            merged.append(s)
    return merged


def byte_spans(text, spans):
    """Character offsets (Python) to byte offsets (C)."""
    return [[len(text[:s].encode()), len(text[:e].encode())] for s, e in spans]


# ---- conversations ----------------------------------------------------------------------------

def msg(role, content, **extra):
    m = {"role": role, "content": content}
    m.update(extra)
    return m


def call(name, arguments, content=None, **extra):
    """An assistant tool call; no content key unless given (the gpt-oss template tests
    `"<|channel|>..." in message.content`, which fails on null)."""
    m = {"role": "assistant"}
    if content is not None:
        m["content"] = content
    m["tool_calls"] = [{"type": "function", "function": {"name": name, "arguments": arguments}}]
    m.update(extra)
    return m


UNICODE_Q = "Ça va? Größe, 日本語, emoji 🙂, Zeichen \u00e9\u0301."
UNICODE_A = "Très bien — merci! 😀 Ελληνικά, עברית, 中文."
QUOTES = 'He said "hi" \\ then left.\n\tTabbed\r\nline; control \x01\x1f and DEL \x7f.'

COMMON = [
    ("single_turn", {}, [msg("user", "What is 2+2?"), msg("assistant", "4")]),
    ("system_prompt", {}, [msg("system", "You are a terse assistant."), msg("user", "Hi"),
                           msg("assistant", "Hello.")]),
    ("multi_turn", {}, [msg("system", "Answer in French."), msg("user", "Hello"),
                        msg("assistant", "Bonjour !"), msg("user", "Thanks"),
                        msg("assistant", "De rien.")]),
    ("unicode", {}, [msg("user", UNICODE_Q), msg("assistant", UNICODE_A)]),
    ("empty_content", {}, [msg("user", ""), msg("assistant", "")]),
    ("whitespace_edges", {}, [msg("system", "  \n padded system \t\n"),
                              msg("user", "\u3000 wide space and nbsp\u00a0"),
                              msg("assistant", "\n  indented answer  \n\n")]),
    ("ends_with_user", {}, [msg("user", "First"), msg("assistant", "One"),
                            msg("user", "Second")]),
    ("quotes_and_controls", {}, [msg("user", QUOTES), msg("assistant", QUOTES)]),
    ("empty_system", {}, [msg("system", ""), msg("user", "Hi"), msg("assistant", "Hey")]),
    ("newlines_in_content", {}, [msg("user", "line one\nline two\n\nline four"),
                                 msg("assistant", "```c\nint main(void) { return 0; }\n```")]),
]

WEATHER_ARGS = {"city": "Paris", "units": "metric", "days": 3, "ratio": 0.25, "tags": ["a", "é"],
                "nested": {"ok": True, "none": None, "big": 1e20, "small": 1.5e-7}}

HARMONY = [
    ("thinking_last_turn", {"date": "2025-06-28"},
     [msg("user", "What is 17*3?"),
      msg("assistant", "51", thinking="17*3 = 51. Easy.")]),
    ("thinking_dropped_in_history", {"date": "2025-06-28"},
     [msg("system", "Be brief."), msg("user", "2+2?"),
      msg("assistant", "4", thinking="Add them."), msg("user", "3+3?"),
      msg("assistant", "6", thinking="Add again.")]),
    ("reasoning_content_alias", {"date": "2025-01-02"},
     [msg("user", "Why?"), msg("assistant", "Because.", reasoning_content="Think first.")]),
    ("developer_role", {"date": "2024-12-31", "reasoning_effort": "high"},
     [msg("developer", "Always answer in haiku."), msg("user", "Spring?"),
      msg("assistant", "Petals on the wind\nsoft rain wakes the sleeping ground\ngreen returns again")]),
    ("low_effort_identity", {"date": "2025-06-28", "reasoning_effort": "low",
                             "model_identity": "You are Tuney, a test model."},
     [msg("user", "Ping"), msg("assistant", "Pong")]),
    ("empty_thinking", {"date": "2025-06-28"},
     [msg("user", "Quick"), msg("assistant", "Done", thinking="")]),
    ("tool_call_then_answer", {"date": "2025-06-28"},
     [msg("system", "You can look up the weather."),
      msg("user", "Weather in Paris?"),
      call("get_weather", WEATHER_ARGS, thinking="I should call get_weather."),
      msg("tool", "Sunny, 24°C \"dry\""),
      msg("assistant", "It is sunny and 24°C in Paris.", thinking="Report it.")]),
    ("tool_call_last", {"date": "2025-06-28"},
     [msg("user", "Weather in Oslo?"),
      call("get_weather", {"city": "Oslo"}, content="Need the weather tool.")]),
    ("tool_call_string_arguments", {"date": "2025-06-28"},
     [msg("user", "Add 1 and 2"),
      call("add", "{\"a\": 1, \"b\": 2}"),
      msg("tool", "3"),
      msg("assistant", "3")]),
    ("consecutive_assistant", {"date": "2025-06-28"},
     [msg("user", "Two parts please"), msg("assistant", "Part one."), msg("assistant", "Part two.")]),
]

LLAMA3 = [
    ("date_option", {"date": "2025-03-05"}, [msg("user", "Date?"), msg("assistant", "Today.")]),
    ("later_system", {}, [msg("user", "a"), msg("assistant", "b"), msg("system", "Switch to caps."),
                          msg("user", "c"), msg("assistant", "D")]),
    ("tool_call_content_dropped", {}, [msg("user", "Time?"), call("clock", {}, content="Checking.")]),
    ("tool_call", {}, [msg("user", "Weather in Paris?"),
                       call("get_weather", WEATHER_ARGS),
                       msg("tool", "Sunny, 24°C"),
                       msg("assistant", "Sunny and 24°C.")]),
    ("unicode_whitespace_trim", {}, [msg("system", "\u2003\u2028sys\u00a0"),
                                     msg("user", "\x1c\x1d\x1e\x1fq\x85"),
                                     msg("assistant", "\u205f\u3000a\u2009\u200a")]),
]

CHATML = [
    ("later_system", {}, [msg("user", "a"), msg("assistant", "b"), msg("system", "Now be formal."),
                          msg("user", "c"), msg("assistant", "d")]),
    ("tool_calls", {}, [msg("system", "Use tools."), msg("user", "Weather in Paris and Oslo?"),
                        call("get_weather", WEATHER_ARGS, content="Let me check."),
                        msg("tool", "Paris: sunny"), msg("tool", "Oslo: rain"),
                        call("get_weather", {"city": "Rome"}),
                        msg("tool", "Rome: hot"),
                        msg("assistant", "Sunny, rain and hot.")]),
    ("tool_first", {}, [msg("tool", "orphan result"), msg("user", "ok"), msg("assistant", "fine")]),
    ("tool_last", {}, [msg("user", "Time?"), call("clock", {}), msg("tool", "12:00")]),
]

MISTRAL = [
    ("spaces_kept", {}, [msg("user", "  hi  "), msg("assistant", "  hello  "), msg("user", "x"),
                         msg("assistant", "y")]),
    ("system_only_prompt", {}, [msg("system", "Be nice."), msg("user", "Hi")]),
]

FORMATS = {
    # The gpt-oss template's default date is today's: fixtures fix one.
    "harmony": ("gpt-oss.jinja", [(n, dict(o, date="2025-06-28"), m) for n, o, m in COMMON] + HARMONY),
    "llama3": ("llama-3.1.jinja", COMMON + LLAMA3),
    "chatml": ("qwen2.5.jinja", COMMON + CHATML),
    "mistral": ("mistral-v0.2.jinja", COMMON + MISTRAL),
}


def harmony_encoding():
    """openai-harmony's gpt-oss encoding, offline: it reads o200k_base.tiktoken from
    TIKTOKEN_ENCODINGS_BASE, pointed here at a copy of the rank file the bpe-openai package
    carries. None when either package is missing."""
    if importlib.util.find_spec("openai_harmony") is None or importlib.util.find_spec("bpe_openai") is None:
        return None
    import bpe_openai
    cache = os.path.join("build", "ref-vocab", "harmony")
    os.makedirs(cache, exist_ok=True)
    dst = os.path.join(cache, "o200k_base.tiktoken")
    if not os.path.exists(dst):
        src = os.path.join(os.path.dirname(bpe_openai.__file__), "data", "o200k_base.tiktoken.gz")
        with gzip.open(src, "rb") as f, open(dst, "wb") as g:
            g.write(f.read())
    os.environ["TIKTOKEN_ENCODINGS_BASE"] = os.path.abspath(cache)
    import openai_harmony as h
    return h.load_harmony_encoding(h.HarmonyEncodingName.HARMONY_GPT_OSS)


def harmony_messages(options, messages):
    """A case as openai-harmony messages, by the rules the jinja template follows (src/text/chat.h
    lists them): history answers lose their thinking, the last answer keeps it on the analysis
    channel, a tool call keeps its reasoning only when no plain answer follows, tool results are
    the JSON string of their content from functions.NAME to the assistant."""
    import openai_harmony as h
    effort = {"low": h.ReasoningEffort.LOW, "medium": h.ReasoningEffort.MEDIUM,
              "high": h.ReasoningEffort.HIGH}
    sysc = h.SystemContent.new().with_conversation_start_date(options["date"])
    sysc = sysc.with_reasoning_effort(effort[options.get("reasoning_effort", "medium")])
    if "model_identity" in options:
        sysc = sysc.with_model_identity(options["model_identity"])
    out = [h.Message.from_role_and_content(h.Role.SYSTEM, sysc)]
    msgs = template_messages(messages)
    if msgs[0]["role"] in ("system", "developer"):
        if msgs[0]["content"]:  # the template writes no developer message for empty instructions
            # Known difference: the jinja template ends the instructions with "\n\n" (meant to
            # separate a "# Tools" section), openai-harmony only before one. Handing the "\n\n"
            # to openai-harmony as part of the instructions renders the template's text, so the
            # ids of everything else can be compared.
            dev = h.DeveloperContent.new().with_instructions(msgs[0]["content"] + "\n\n")
            out.append(h.Message.from_role_and_content(h.Role.DEVELOPER, dev))
        msgs = msgs[1:]
    last_call = None
    for i, m in enumerate(msgs):
        later_answer = any(n["role"] == "assistant" and "tool_calls" not in n for n in msgs[i + 1:])
        if m["role"] == "user":
            out.append(h.Message.from_role_and_content(h.Role.USER, m["content"]))
        elif m["role"] == "tool":
            author = h.Author.new(h.Role.TOOL, "functions." + last_call)
            out.append(h.Message.from_author_and_content(author, json.dumps(m["content"], ensure_ascii=False))
                       .with_recipient("assistant").with_channel("commentary"))
        elif "tool_calls" in m:
            fn = m["tool_calls"][0]["function"]
            reasoning = m.get("content") or m.get("thinking")
            if reasoning and not later_answer:
                out.append(h.Message.from_role_and_content(h.Role.ASSISTANT, reasoning)
                           .with_channel("analysis"))
            # The template prints the arguments through tojson, a string as a JSON string.
            args = json.dumps(fn["arguments"], ensure_ascii=False)
            out.append(h.Message.from_role_and_content(h.Role.ASSISTANT, args)
                       .with_channel("commentary").with_recipient("functions." + fn["name"])
                       .with_content_type("json"))
            last_call = fn["name"]
        else:
            if "thinking" in m and i == len(msgs) - 1:
                out.append(h.Message.from_role_and_content(h.Role.ASSISTANT, m["thinking"])
                           .with_channel("analysis"))
            out.append(h.Message.from_role_and_content(h.Role.ASSISTANT, m["content"])
                       .with_channel("final"))
    return out


def harmony_ids(enc, cases):
    """Renders every harmony case with openai-harmony's render_conversation_for_training and,
    where its text is the template's, stores its token ids in the case as "harmony_ids" (the
    ids tests/test_chat.c expects from tune's render tokenized with o200k_harmony). Returns the
    names of the cases whose text differs."""
    import openai_harmony as h
    # auto_drop_analysis would drop the last turn's analysis, which training keeps.
    keep = h.RenderConversationConfig(auto_drop_analysis=False)
    differ = []
    for case in cases:
        convo = h.Conversation.from_messages(harmony_messages(case["options"], case["messages"]))
        ids = enc.render_conversation_for_training(convo, config=keep)
        if enc.decode_utf8(ids) == case["text"]:
            case["harmony_ids"] = ids
        else:
            differ.append(case["name"])
    return differ


def transformers_render(render_jinja_template, source, messages, kw):
    """The same through transformers. It passes only plain data to templates, so a fixed date
    reaches its strftime_now through the module's clock instead."""
    import transformers.utils.chat_template_utils as ctu
    kw = dict(kw)
    fixed = kw.pop("strftime_now", None)
    real = ctu.datetime

    class Clock(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.datetime.strptime(fixed("%Y-%m-%d"), "%Y-%m-%d")

    if fixed is not None:
        ctu.datetime = Clock
    try:
        return render_jinja_template([messages], chat_template=source, **kw)[0][0]
    finally:
        ctu.datetime = real


def main():
    env = make_env()
    try:
        from transformers.utils.chat_template_utils import render_jinja_template
    except ImportError:
        render_jinja_template = None
    os.makedirs(OUT, exist_ok=True)
    for fmt, (tname, convs) in FORMATS.items():
        path = os.path.join(TEMPLATES, tname)
        with open(path, encoding="utf-8") as f:
            source = f.read()
        template = env.from_string(source)
        cases = []
        for name, options, messages in convs:
            kw = template_kwargs(fmt, options)
            text = template.render(messages=template_messages(messages), **kw)
            if render_jinja_template is not None:
                ref = transformers_render(render_jinja_template, source, messages, kw)
                assert ref == text, f"{fmt}/{name}: transformers renders differently"
            spans = expected_spans(fmt, text)
            for m in messages:  # every assistant answer lies inside a span
                if m["role"] == "assistant" and m.get("content") and fmt != "llama3":
                    assert any(m["content"] in text[s:e] for s, e in spans), f"{fmt}/{name}"
            cases.append({"name": name, "options": options, "messages": messages, "text": text,
                          "spans": byte_spans(text, spans)})
        if fmt == "harmony":
            enc = harmony_encoding()
            if enc is None:
                print("harmony: openai-harmony or bpe-openai not installed; no harmony_ids")
            else:
                differ = harmony_ids(enc, cases)
                print(f"harmony: openai-harmony renders the template's text (developer \\n\\n "
                      f"aside) for {len(cases) - len(differ)} of {len(cases)} conversations"
                      + (f"; differs on {', '.join(differ)}" if differ else ""))
                assert not differ, "harmony: openai-harmony and the template disagree"
        doc = {"format": fmt, "template": path, "cases": cases}
        with open(os.path.join(OUT, fmt + ".json"), "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, indent=1)
            f.write("\n")
        print(f"{fmt}: {len(cases)} conversations"
              + (" (transformers agrees)" if render_jinja_template else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
