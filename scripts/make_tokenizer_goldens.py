#!/usr/bin/env python3
"""Tokenizer fixtures and goldens for tests/data/test_tokenizer.cpp and test_chat_template.cpp.

1. Trains two tiny byte-level BPE tokenizers with Hugging Face `tokenizers` on the English text
   below and writes them with a tokenizer_config.json (special tokens, chat template):
     tests/fixtures/tokenizers/tiny-bytelevel/  Qwen3-like: NFC, Qwen split regex, ChatML tokens,
                                                the real Qwen3 chat template
     tests/fixtures/tokenizers/tiny-qwen25/     the same tokenizer.json with the Qwen2.5 template
                                                (default system prompt)
     tests/fixtures/tokenizers/tiny-llama3/     Llama-3-like: digits in runs of 3, ignore_merges,
                                                header tokens, BOS added by the post-processor,
                                                a Llama-3.1-style template (date lines)
2. Records, for those and for the real files in ../shared/tokenizers/{qwen3,llama3,llama2},
   ids / offsets / decodes of a varied corpus (tokenizers' Tokenizer.from_file), and chat strings
   rendered by transformers' apply_chat_template, into tests/fixtures/tokenizers/goldens/<name>.json.

Run from the project root: python3 scripts/make_tokenizer_goldens.py
Needs: pip install tokenizers transformers (jinja2 comes with transformers).
"""
import json
import os
import shutil
import sys

import tokenizers
import transformers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "tokenizers")
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "tokenizers")

QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")

TRAINING_TEXT = """\
The cache of a language model holds the keys and values of every token it has read. Two models
that read the same prompt hold two caches, and a small network can learn to map one into the
other. This is the idea of cache-to-cache communication: instead of writing text for each other,
the models share what they have already computed. The receiver keeps its own cache in full and
adds a gated, weighted projection of the sharer's cache, layer by layer.
We train the fuser with the receiver's next-token loss on the answer, while both models stay
frozen. The gradient flows back through the receiver into the fuser. A good fuser learns which
heads to trust, and a gate decides whether a layer takes part at all. Training on half a million
conversations takes about two thousand updates; a few hundred already come close.
Questions and answers: What is the capital of France? Paris is the capital of France. How many
legs does a spider have? A spider has eight legs. Which planet is the largest? Jupiter is.
The quick brown fox jumps over the lazy dog. She sells sea shells by the sea shore. It's a
beautiful day, isn't it? We'll see; they've said they'd come, and I'm sure you're right.
def train(model, data, steps=1000):
    for step in range(steps):
        loss = model(data[step % len(data)])
        loss.backward()
    return loss
Numbers like 3.14159, 2.71828, 1,000,000 and 2024 appear in text too, as do dates (2025-01-31).
"""

CORPUS = [
    "Hello world! This is a test.",
    "The quick brown fox jumps over the lazy dog's back; it's 12345 km/h, isn't it? We'll SEE.",
    "def foo(x):\n    return x ** 2  # square\n\n\tif x >= 10:\n\t\tprint(f\"{x:,}\")\n",
    "Numbers: 3.14159, 1,000,000 and 2024-05-17; phone +1 (555) 010-9999; 0123456789.",
    "中文测试：你好，世界！日本語のテキストです。한국어 문장입니다.",
    "Emoji 😀👍🏽 family 👨‍👩‍👧‍👦 flags 🇫🇷 and symbols ∑∫√ ≠ ≤.",
    "   leading spaces, trailing spaces   ",
    "tabs\t\tand\nnewlines\n\n\nand\r\nwindows   \n  mixed \t\n",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|end_of_text|>",
    "Cafe\u0301 re\u0301sume\u0301 na\u0308ive A\u030a \u212b e\u0323\u0302 \u1100\u1161\u11a8 ko\u0301",
    "Café résumé naïve — “quotes” ‘single’ … ellipsis",
    "<s>[INST] hello [/INST] answer </s>",
    "x<think>\nreasoning\n</think>\n\nanswer<|endoftext|>",
    "",
    " ",
    "\n\n",
    "a" * 120,
    "Ünïcödé ÀÉÎÕÜ ñ ç ß ø å æ œ",
    "ŉ ǅ ﬁ ﬀ Ⅻ ½ ㎏ ℃",
    "URL https://example.com/path?q=1&r=2#frag and email a.b@c.de",
    "🤖🤖🤖末尾",
]

CHATS = [
    dict(messages=[{"role": "user", "content": "What is 2+2?"}], add_generation_prompt=True),
    dict(messages=[{"role": "system", "content": "You are a terse assistant."},
                   {"role": "user", "content": "Name a prime number."}], add_generation_prompt=True),
    dict(messages=[{"role": "system", "content": "Answer briefly."},
                   {"role": "user", "content": "Capital of France?"},
                   {"role": "assistant", "content": "Paris."}], add_generation_prompt=False),
    dict(messages=[{"role": "user", "content": "Hi!"},
                   {"role": "assistant", "content": "Hello! How can I help?"},
                   {"role": "user", "content": "Tell me a joke about caches."}], add_generation_prompt=True),
    dict(messages=[{"role": "user", "content": "Think first: 3*7?"},
                   {"role": "assistant", "content": "<think>\n3 times 7 is 21.\n</think>\n\n21"},
                   {"role": "user", "content": "And 4*6?"},
                   {"role": "assistant", "content": "24"}], add_generation_prompt=False),
    dict(messages=[{"role": "user", "content": "  padded with spaces \n"}], add_generation_prompt=True),
    dict(messages=[{"role": "user", "content": "你好 😀\nline two\ttab"}], add_generation_prompt=False),
    dict(messages=[{"role": "user", "content": "Reason this out."}], add_generation_prompt=True,
         enable_thinking=True),
]

# Llama-2-chat's template (meta-llama/Llama-2-7b-chat-hf); the shared llama2 config has none, and
# our C++ falls back to this format for Llama tokenizers without a template (as transformers < 4.43 did).
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}")

# Qwen2.5-Instruct's template (Qwen/Qwen2.5-0.5B-Instruct): a default system prompt.
QWEN25_TEMPLATE = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

# The plain-text part of Llama-3.1-Instruct's template (tools left out): a system block with the
# knowledge-cutoff and date lines, trimmed contents, an optional generation header.
LLAMA31_TEMPLATE = """{{- bos_token }}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""


def train_bpe(split_regex, vocab_size, ignore_merges):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tok.normalizer = normalizers.NFC() if not ignore_merges else None
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(split_regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([TRAINING_TEXT] * 4, trainer=trainer)
    return tok


def write_folder(name, tok, config):
    d = os.path.join(FIXTURES, name)
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"))
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
        f.write("\n")
    return d


def make_tiny_fixtures():
    qwen3_cfg = json.load(open(os.path.join(SHARED, "qwen3", "tokenizer_config.json")))

    tok = train_bpe(QWEN_SPLIT, 500, ignore_merges=False)
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok.add_tokens([tokenizers.AddedToken(t, normalized=False, special=False) for t in ("<think>", "</think>")])
    base = {
        "add_bos_token": False, "add_prefix_space": False, "bos_token": None,
        "clean_up_tokenization_spaces": False, "eos_token": "<|im_end|>", "errors": "replace",
        "model_max_length": 32768, "pad_token": "<|endoftext|>", "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer", "unk_token": None,
    }
    write_folder("tiny-bytelevel", tok, dict(base, chat_template=qwen3_cfg["chat_template"]))
    write_folder("tiny-qwen25", tok, dict(base, chat_template=QWEN25_TEMPLATE))

    tok = train_bpe(LLAMA3_SPLIT, 500, ignore_merges=True)
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                "<|reserved_special_token_1|>", "<|start_header_id|>", "<|end_header_id|>",
                "<|reserved_special_token_2|>", "<|eot_id|>"]
    tok.add_special_tokens(specials)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                      special_tokens=[("<|begin_of_text|>", bos)]),
    ])
    write_folder("tiny-llama3", tok, {
        "bos_token": "<|begin_of_text|>", "clean_up_tokenization_spaces": True,
        "eos_token": "<|eot_id|>", "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 131072, "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": LLAMA31_TEMPLATE,
    })


def render_chats(folder, template_override=None):
    hf = transformers.AutoTokenizer.from_pretrained(folder)
    fast = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    out = []
    for case in CHATS:
        kwargs = {}
        if template_override:
            kwargs["chat_template"] = template_override
        thinking = case.get("enable_thinking", False)
        try:
            text = hf.apply_chat_template(case["messages"], tokenize=False,
                                          add_generation_prompt=case["add_generation_prompt"],
                                          enable_thinking=thinking, **kwargs)
        except Exception as e:  # e.g. Llama-2's alternation check
            text = None
            print(f"  chat not renderable by {folder}: {e}", file=sys.stderr)
        # ids of the rendered text as `tokenizers` encodes it (template tokens found in the text).
        ids = fast.encode(text, add_special_tokens=False).ids if text is not None else None
        out.append(dict(messages=case["messages"], add_generation_prompt=case["add_generation_prompt"],
                        enable_thinking=thinking, expected=text, expected_ids=ids))
    return out


def goldens(name, folder, chat_template_override=None):
    tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    cfg = json.load(open(os.path.join(folder, "tokenizer_config.json")))
    cases = []
    for text in CORPUS:
        for add in (False, True):
            e = tok.encode(text, add_special_tokens=add)
            cases.append(dict(text=text, add_special_tokens=add, ids=e.ids, offsets=[list(o) for o in e.offsets],
                              decode=tok.decode(e.ids, skip_special_tokens=False),
                              decode_skip_special=tok.decode(e.ids, skip_special_tokens=True)))
    specials = sorted(a["id"] for a in json.load(open(os.path.join(folder, "tokenizer.json")))["added_tokens"]
                      if a["special"])

    def tid(key):
        v = cfg.get(key)
        if isinstance(v, dict):
            v = v.get("content")
        return tok.token_to_id(v) if v else None

    g = dict(name=name, tokenizers_version=tokenizers.__version__, transformers_version=transformers.__version__,
             vocab_size=tok.get_vocab_size(with_added_tokens=True), bos_id=tid("bos_token"), eos_id=tid("eos_token"),
             pad_id=tid("pad_token"), special_ids=specials, cases=cases,
             chats=render_chats(folder, chat_template_override))
    os.makedirs(os.path.join(FIXTURES, "goldens"), exist_ok=True)
    path = os.path.join(FIXTURES, "goldens", name + ".json")
    with open(path, "w") as f:
        json.dump(g, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path)} bytes)")


def main():
    if not os.path.isdir(SHARED):
        sys.exit(f"needs the real tokenizers in {SHARED}")
    make_tiny_fixtures()
    for name in ("tiny-bytelevel", "tiny-qwen25", "tiny-llama3"):
        goldens(name, os.path.join(FIXTURES, name))
    goldens("qwen3", os.path.join(SHARED, "qwen3"))
    goldens("llama3", os.path.join(SHARED, "llama3"))
    goldens("llama2", os.path.join(SHARED, "llama2"), chat_template_override=LLAMA2_TEMPLATE)


if __name__ == "__main__":
    main()
