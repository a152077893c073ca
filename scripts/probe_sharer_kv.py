#!/usr/bin/env python3
"""Where does the toy sharer's cache hold what it recalls? A linear probe per layer and position.

For every question of the toy world the sharer (a Hugging Face Llama folder) reads its own chat
prompt; its cached K and V (all KV heads, concatenated) at one position are the features; a
linear classifier trained on the fuser-training people predicts the answer (attribute and value,
30 classes), and is scored on the held-out people. This is how we found that a 3-layer sharer
holds the answer in its last layer's cache at the end of its prompt (the closing template), not
on the message tokens, which the reference alignment fuses (README, the toy world).

  python3 scripts/probe_sharer_kv.py [SHARER_DIR] [WORLD_DIR]
  (defaults: recipes/toy/seed0/sharer runs/demo/world; needs torch, transformers, tokenizers)
"""
import json
import os
import sys

import torch
from tokenizers import Tokenizer
from transformers import LlamaForCausalLM

sharer_dir = sys.argv[1] if len(sys.argv) > 1 else "recipes/toy/seed0/sharer"
world_dir = sys.argv[2] if len(sys.argv) > 2 else "runs/demo/world"
torch.manual_seed(0)
torch.set_num_threads(1)
tok = Tokenizer.from_file(os.path.join(sharer_dir, "tokenizer.json"))
model = LlamaForCausalLM.from_pretrained(sharer_dir).eval()
SUBJECTS = ["city", "job", "pet"]
HEAD = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
TAIL = "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"


def load(name):
    with open(os.path.join(world_dir, name)) as f:
        return [json.loads(line) for line in f]


def features(items):
    out = {}
    for it in items:
        a = tok.encode(HEAD, add_special_tokens=False).ids
        b = tok.encode(it["question"], add_special_tokens=False).ids
        c = tok.encode(TAIL, add_special_tokens=False).ids
        ids = torch.tensor([a + b + c])
        with torch.no_grad():
            cache = model(ids, use_cache=True).past_key_values
        lo, hi = len(a), len(a) + len(b)
        for layer in range(model.config.num_hidden_layers):
            k, v = cache.layers[layer].keys[0], cache.layers[layer].values[0]  # (H, N, D)
            kv = torch.cat([k, v], 0).permute(1, 0, 2).reshape(ids.shape[1], -1)
            picks = {"last message token": kv[hi - 1], "mean over message": kv[lo:hi].mean(0),
                     "last prompt token": kv[-1], "second-last prompt token": kv[-2]}
            for name, x in picks.items():
                out.setdefault((layer, name), []).append(x)
    return {k: torch.stack(v) for k, v in out.items()}


def labels(items):
    return torch.tensor([it["answer"] + 10 * SUBJECTS.index(it["subject"]) for it in items])


train, test = load("eval_fuser_train.jsonl"), load("eval_heldout.jsonl")
ftr, fte, ytr, yte = features(train), features(test), labels(train), labels(test)
print(f"linear probe of the sharer's K/V -> answer; train {len(train)} questions "
      f"(fuser-training people), test {len(test)} (held-out people); chance 10%")
for key in ftr:
    x, xt = ftr[key], fte[key]
    mu, sd = x.mean(0), x.std(0) + 1e-5
    x, xt = (x - mu) / sd, (xt - mu) / sd
    lin = torch.nn.Linear(x.shape[1], 30)
    opt = torch.optim.Adam(lin.parameters(), 1e-2, weight_decay=1e-3)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(lin(x), ytr).backward()
        opt.step()
    with torch.no_grad():
        acc_tr = (lin(x).argmax(-1) == ytr).float().mean().item()
        acc_te = (lin(xt).argmax(-1) == yte).float().mean().item()
    print(f"layer {key[0]}  {key[1]:<26} train {100 * acc_tr:5.1f}%  held-out {100 * acc_te:5.1f}%")
