#!/usr/bin/env python3
"""Trains the toy world's two tokenizers (dev-time; the results are shipped in recipes/toy/).

The receiver gets a byte-level BPE of 1024 tokens with Qwen's split rule, ChatML specials and the
Qwen3 chat template; the sharer a byte-level BPE of 768 tokens with Llama-3's split rule, its
specials and the Llama-3.0 chat template (no dated system block). Both learn from the text of a
world of seed 1000, which no shipped model uses, so that names of the worlds we train on (seeds
0, 1, 2, ...) are not single tokens by accident of the tokenizer.

    build/c2c toy-world --seed 1000 --out /tmp/toy-tok-world
    python3 scripts/make_toy_tokenizers.py /tmp/toy-tok-world recipes/toy
"""
import json
import os
import sys

import tokenizers
from tokenizers import processors

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tokenizer_goldens as g  # noqa: E402  (train_bpe and the split rules)

LLAMA30_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def world_text(world):
    parts = []
    for name in ("sharer_corpus.jsonl", "receiver_corpus.jsonl"):
        with open(os.path.join(world, name)) as f:
            for line in f:
                r = json.loads(line)
                if "text" in r:
                    parts.append(r["text"])
                else:
                    parts.extend(m["content"] for m in r["messages"])
    return "\n".join(parts)


def save(folder, tok, config):
    os.makedirs(folder, exist_ok=True)
    tok.save(os.path.join(folder, "tokenizer.json"))
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"{folder}: {tok.get_vocab_size()} tokens")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    world, out = sys.argv[1], sys.argv[2]
    g.TRAINING_TEXT = world_text(world)
    qwen3_cfg = json.load(open(os.path.join(g.SHARED, "qwen3", "tokenizer_config.json")))

    tok = g.train_bpe(g.QWEN_SPLIT, 1024, ignore_merges=False)
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok.add_tokens([tokenizers.AddedToken(t, normalized=False, special=False) for t in ("<think>", "</think>")])
    save(os.path.join(out, "receiver_tokenizer"), tok, {
        "add_bos_token": False, "add_prefix_space": False, "bos_token": None,
        "clean_up_tokenization_spaces": False, "eos_token": "<|im_end|>", "errors": "replace",
        "model_max_length": 32768, "pad_token": "<|endoftext|>", "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer", "unk_token": None,
        "chat_template": qwen3_cfg["chat_template"],
    })

    tok = g.train_bpe(g.LLAMA3_SPLIT, 768, ignore_merges=True)
    tok.add_special_tokens(["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                            "<|end_header_id|>", "<|eot_id|>"])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                      special_tokens=[("<|begin_of_text|>", bos)]),
    ])
    save(os.path.join(out, "sharer_tokenizer"), tok, {
        "bos_token": "<|begin_of_text|>", "clean_up_tokenization_spaces": True,
        "eos_token": "<|eot_id|>", "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 8192, "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": LLAMA30_TEMPLATE,
    })


if __name__ == "__main__":
    main()
