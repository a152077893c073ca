#!/usr/bin/env python3
"""Golden of one whole C2C training step and of one evaluation forward in each scored mode,
computed independently of the C++ code: Hugging Face transformers runs the tiny fixture models
(receiver tests/fixtures/models/qwen3-tiny, sharer tests/fixtures/models/llama3-tiny-sharded)
and scripts/fuser_reference.py the fuser, all in float64.

The step (DESIGN.md section 3), each row on its own (no padding): the sharer prefills its own
tokens; the receiver prefills its prompt prefix [0, P-1); for every mapped receiver layer the
fuser rewrites the prefix slots from the sharer slots slot_of[p] (slot -1: the receiver keeps
its own K/V there); the receiver then reads [P-1, end) over that cache; the loss is the summed
cross entropy of the tokens in [loss_start, loss_end). Training mode: soft gates at the fp32
temperature of `step`, no Gumbel noise (train.gate_noise false), dropout 0; gradients of the
summed loss with respect to every fuser tensor. Evaluation: per-row losses of C2C (hard gates),
of the receiver alone and of the sharer alone on the same token ids, over three rows of which
the last shares the first one's prompt (the evaluation's shared prefill).

Output tests/fixtures/train_step/train_step_golden.safetensors (fp32): the fuser weights
`layer{i}.<published name>` (fuser i writes receiver layer map[i][0] from sharer layer
map[i][1]), `train.loss_sum`, `train.row_loss`, `grad.layer{i}.<name>`, `eval.c2c.row_loss`,
`eval.receiver.row_loss`, `eval.sharer.row_loss`; metadata "config" (the fuser config), "map",
"rows" (the samples: receiver_ids, prompt_length, loss_start, loss_end, sharer ids, slot_of),
"step", "format_version".

Dev-time only: pip install torch transformers safetensors numpy &&
               python3 scripts/train_step_reference.py
"""
import json
import math
import os
import sys

import torch
import transformers
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fuser_reference as ref  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
RECEIVER = os.path.join(ROOT, "tests", "fixtures", "models", "qwen3-tiny")
SHARER = os.path.join(ROOT, "tests", "fixtures", "models", "llama3-tiny-sharded")
OUT = os.path.join(ROOT, "tests", "fixtures", "train_step", "train_step_golden.safetensors")
FORMAT_VERSION = "1"
F64 = torch.float64
STEP = 300
# Receiver layer <- sharer layer, crossed so that the map matters.
MAP = [[0, 1], [1, 0]]

# Two training rows: row 0 reads the sharer slot for slot (identity alignment); row 1 has its own
# sharer tokens, one prompt position without a sharer token (-1) and a loss range that stops
# before the end. The third evaluation row shares row 0's prompt with another reply.
ROWS = [
    dict(receiver_ids=[5, 17, 300, 41, 9, 77, 123, 8, 64], prompt_length=6, loss_start=6, loss_end=9,
         sharer_ids=[5, 17, 300, 41, 9], slot_of=[0, 1, 2, 3, 4]),
    dict(receiver_ids=[3, 900, 12, 250, 33, 701, 2], prompt_length=4, loss_start=4, loss_end=6,
         sharer_ids=[44, 900, 15, 250, 610], slot_of=[1, -1, 4]),
]
EVAL_ROWS = ROWS + [dict(ROWS[0], receiver_ids=ROWS[0]["receiver_ids"][:6] + [200, 19], loss_end=8)]


def load(path):
    m = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=F64)
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def layer_kv(cache, l):
    layer = cache.layers[l]
    return layer.keys, layer.values  # (1, H, S, D)


def row_loss(model, row, fuse=None):
    """Summed loss of one row; fuse(rk, rv, l) -> fused (rk, rv) for receiver layer l."""
    ids = torch.tensor([row["receiver_ids"]])
    P = row["prompt_length"]
    out = model(input_ids=ids[:, : P - 1], use_cache=True)
    cache = transformers.DynamicCache()
    for l in range(model.config.num_hidden_layers):
        k, v = layer_kv(out.past_key_values, l)
        if fuse is not None:
            k, v = fuse(k, v, l)
        cache.update(k, v, l)
    logits = model(input_ids=ids[:, P - 1:], past_key_values=cache, use_cache=True).logits[0]
    loss = 0.0
    for pos in range(row["loss_start"], row["loss_end"]):
        t = pos - P  # response position t predicts receiver token P + t
        loss = loss + torch.nn.functional.cross_entropy(logits[t][None], ids[0, pos][None])
    return loss


def fuse_fn(sharer, weights, row, train, tau_cfg):
    """The fusion of one row's prefix, for row_loss."""
    s_out = sharer(input_ids=torch.tensor([row["sharer_ids"]]), use_cache=True)
    slot_of = row["slot_of"][: row["prompt_length"] - 1]
    gather = torch.tensor([max(s, 0) for s in slot_of])
    own = torch.tensor([s < 0 for s in slot_of]).view(1, 1, -1, 1)

    def fuse(rk, rv, l):
        for i, (r_layer, s_layer) in enumerate(MAP):
            if r_layer != l:
                continue
            sk, sv = layer_kv(s_out.past_key_values, s_layer)
            sk, sv = sk[:, :, gather], sv[:, :, gather]
            fk = ref.fuse_branch(weights[i], "key", sk, rk, train, None, tau_cfg)
            fv = ref.fuse_branch(weights[i], "value", sv, rv, train, None, tau_cfg)
            return torch.where(own, rk, fk), torch.where(own, rv, fv)
        return rk, rv
    return fuse


def main():
    gen = torch.Generator().manual_seed(4321)
    receiver, sharer = load(RECEIVER), load(SHARER)
    rc, sc = receiver.config, sharer.config
    c = dict(source_num_heads=sc.num_key_value_heads, source_head_dim=sc.head_dim,
             target_num_heads=rc.num_key_value_heads, target_head_dim=rc.head_dim,
             hidden_dim=16, intermediate_dim=24, num_layers=3, dropout=0.0,
             initial_temperature=1.0, final_temperature=0.001, anneal_steps=1929)
    tau = ref.gate_temperature(STEP, c["initial_temperature"], c["final_temperature"], c["anneal_steps"])
    tau = float(torch.tensor(tau, dtype=torch.float32))

    def rnd(*shape, scale=1.0):  # fp32-representable values
        return (torch.randn(*shape, generator=gen, dtype=torch.float32) * scale).to(F64)

    weights = []
    for i in range(len(MAP)):
        W = {}
        for name, shape in ref.layer_shapes(c).items():
            if name == "gate_temperature":
                W[name] = torch.tensor(tau, dtype=F64)
                continue
            if name.endswith("gate_logit"):
                W[name] = torch.tensor(0.3 - 0.5 * i + (0.2 if name.startswith("value") else 0.0), dtype=F64)
            elif name.endswith("norm.weight"):
                W[name] = 1.0 + rnd(*shape, scale=0.1)
            else:
                W[name] = rnd(*shape, scale=1.0 / math.sqrt(shape[-1] if len(shape) == 2 else c["hidden_dim"]))
            W[name].requires_grad_(True)
        weights.append(W)

    # Self-check: the split forward (prefix cache, then the rest) equals one full forward.
    with torch.no_grad():
        for r in EVAL_ROWS:
            ids = torch.tensor([r["receiver_ids"]])
            logp = torch.log_softmax(receiver(input_ids=ids).logits[0], -1)
            full = -sum(logp[pos - 1, ids[0, pos]] for pos in range(r["loss_start"], r["loss_end"]))
            assert abs(full.item() - row_loss(receiver, r).item()) < 1e-9, "cache not continued"

    train_rows = [row_loss(receiver, r, fuse_fn(sharer, weights, r, True, c)) for r in ROWS]
    loss_sum = sum(train_rows)
    loss_sum.backward()
    with torch.no_grad():
        ev = {
            "c2c": [row_loss(receiver, r, fuse_fn(sharer, weights, r, False, c)) for r in EVAL_ROWS],
            "receiver": [row_loss(receiver, r) for r in EVAL_ROWS],
            "sharer": [row_loss(sharer, r) for r in EVAL_ROWS],
        }

    f32 = lambda t: t.detach().to(torch.float32).contiguous()
    tensors = {"train.loss_sum": f32(loss_sum), "train.row_loss": f32(torch.stack(train_rows))}
    for mode, losses in ev.items():
        tensors[f"eval.{mode}.row_loss"] = f32(torch.stack(losses))
    for i, W in enumerate(weights):
        for name, t in W.items():
            tensors[f"layer{i}.{name}"] = f32(t)
            if t.grad is not None:
                tensors[f"grad.layer{i}.{name}"] = f32(t.grad)
    rows = lambda rs: [dict(receiver_ids=r["receiver_ids"], prompt_length=r["prompt_length"],
                            loss_start=r["loss_start"], loss_end=r["loss_end"],
                            sharer_ids=r["sharer_ids"], slot_of=r["slot_of"]) for r in rs]
    meta = {"format_version": FORMAT_VERSION, "config": json.dumps(c), "map": json.dumps(MAP),
            "rows": json.dumps(rows(ROWS)), "eval_rows": json.dumps(rows(EVAL_ROWS)),
            "step": str(STEP), "temperature": repr(tau),
            "generator": "scripts/train_step_reference.py", "transformers": transformers.__version__}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file(tensors, OUT, metadata=meta)
    print(f"wrote {OUT}: {len(tensors)} tensors, loss sum {loss_sum.item():.6f}, "
          f"rows {[round(x.item(), 6) for x in train_rows]}, tau {tau:.6f}")


if __name__ == "__main__":
    main()
