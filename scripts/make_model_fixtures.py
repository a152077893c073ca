#!/usr/bin/env python3
"""Make the tiny random model fixtures and their goldens with Hugging Face transformers.

Each fixture is a `save_pretrained` folder under tests/fixtures/models/<name>/ plus
`golden.safetensors`: per prompt row the ids, the full-prompt logits of an unpadded forward, and
20 greedily generated tokens with the logits of every decode step. The C++ test replays the rows
as one right-padded batch, so padding, per-row positions and decode are checked against
transformers.

Dev-time only:  pip install torch transformers safetensors && python3 scripts/make_model_fixtures.py
"""
import json
import os
import shutil
import sys

import torch
import transformers
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "models")
VOCAB = 1024
PROMPT_LENGTHS = [7, 12, 4]
NEW_TOKENS = 20

COMMON = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
              rms_norm_eps=1e-6, initializer_range=0.1, bos_token_id=1, eos_token_id=2)

TOKENIZER_OF = {"qwen3-tiny": "tiny-bytelevel", "llama3-tiny-sharded": "tiny-llama3"}

FIXTURES = [
    # name, config class, model class, extra config, stored dtype, shard size
    ("qwen3-tiny", "Qwen3Config", "Qwen3ForCausalLM",
     dict(head_dim=32, tie_word_embeddings=True, rope_theta=1000000.0), torch.float32, None),
    ("qwen2-tiny-bf16", "Qwen2Config", "Qwen2ForCausalLM",
     dict(tie_word_embeddings=False, rope_theta=1000000.0), torch.bfloat16, None),
    ("llama3-tiny-sharded", "LlamaConfig", "LlamaForCausalLM",
     dict(tie_word_embeddings=False, rope_theta=500000.0,
          rope_scaling=dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0,
                            high_freq_factor=4.0, original_max_position_embeddings=64)),
     torch.float32, "200KB"),
]


def make(name, config_cls, model_cls, extra, dtype, shard):
    torch.manual_seed(1234)
    cfg = getattr(transformers, config_cls)(**COMMON, **extra)
    model = getattr(transformers, model_cls)(cfg).eval()
    # Random norms too, so a wrong norm weight cannot pass unnoticed.
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif n.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
    out = os.path.join(OUT, name)
    shutil.rmtree(out, ignore_errors=True)
    # Store in the fixture's dtype; the goldens come from the stored (rounded) weights in fp32.
    model.to(dtype)
    kwargs = dict(safe_serialization=True)
    if shard:
        kwargs["max_shard_size"] = shard
    model.save_pretrained(out, **kwargs)
    model = getattr(transformers, model_cls).from_pretrained(out, dtype=torch.float32).eval()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0

    gen = torch.Generator().manual_seed(99)
    tensors = {}
    for i, n in enumerate(PROMPT_LENGTHS):
        ids = torch.randint(3, VOCAB, (1, n), generator=gen)
        with torch.no_grad():
            logits = model(ids).logits[0].float()
            res = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False,
                                 return_dict_in_generate=True, output_logits=True)
        new = res.sequences[0, n:]
        step_logits = torch.stack([l[0].float() for l in res.logits])
        tensors[f"row{i}.ids"] = ids[0].to(torch.int64).contiguous()
        tensors[f"row{i}.logits"] = logits.contiguous()
        tensors[f"row{i}.generated"] = new.to(torch.int64).contiguous()
        tensors[f"row{i}.step_logits"] = step_logits.contiguous()
    save_file(tensors, os.path.join(out, "golden.safetensors"),
              metadata={"transformers": transformers.__version__, "torch": torch.__version__,
                        "new_tokens": str(NEW_TOKENS)})
    # The demo and the CLI tests tokenize text for these models: ship a tiny tokenizer with each
    # (made by scripts/make_tokenizer_goldens.py; its vocabulary fits in VOCAB).
    tok = TOKENIZER_OF.get(name)
    if tok:
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(ROOT, "tests", "fixtures", "tokenizers", tok, f), out)
    print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters -> {out}")


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in FIXTURES:
        make(*f)


if __name__ == "__main__":
    sys.exit(main())
