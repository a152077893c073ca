#!/usr/bin/env python3
"""Independent PyTorch implementation of the C2C fuser formulas (DESIGN.md section 2) and the
golden file the C++ test tests/modules/test_fuser.cpp replays.

Written from the formulas, one receiver layer at a time, in float64 so the golden is a truer
target than the fp32 C++ result. Dropout is 0 (its random mask cannot be replayed); the Gumbel
noise u is drawn here and stored so the C++ forward can replay it.

Output (safetensors, fp32): inputs `sharer_key` ... (Lf, B, H, N, D), `noise.key_u` /
`noise.value_u` (Lf, B, H_r, N, 1), weights `layer{i}.<published name>`, the cotangents
`cot.key` / `cot.value` of the loss sum(cot * fused), outputs `train.key` / `train.value`
(Gumbel gates at the stored temperature), `eval.key` / `eval.value` (hard gates), gradients
`grad.layer{i}.<name>` and `grad.sharer_key` ... of the training loss. The metadata holds the
config as JSON under "config" and "format_version".

Variants (--variant, DESIGN.md section 2 and modules/fuser.h): `full` (the method, the default),
`projection_fusion` (X_r + alpha * p, no gate) and `projection` (the fused cache is p itself, the
fuser does not see X_r). Each has its own golden file; the ablations store no gate gradients
(their gate logits are unused) and `projection` none for the head-weight branch either.

usage: python3 scripts/fuser_reference.py [--variant full|projection_fusion|projection] [--out F]
  (default --out tests/fixtures/fuser/fuser_golden.safetensors for full,
   tests/fixtures/fuser/fuser_golden_<variant>.safetensors otherwise)
"""
import argparse
import json
import math

import torch
from safetensors.torch import save_file

FORMAT_VERSION = "1"

CONFIG = dict(
    num_fusers=3, batch=2, tokens=5,
    source_num_heads=2, source_head_dim=4, target_num_heads=3, target_head_dim=4,
    hidden_dim=16, intermediate_dim=24, num_layers=4,  # L=4: two projection blocks
    initial_temperature=1.0, final_temperature=0.001, anneal_steps=1929, step=300,
)


def gate_temperature(step, tau0, tau1, anneal_steps, kind="geometric"):
    r = min(step / anneal_steps, 1.0) if anneal_steps > 0 else 1.0
    if kind == "linear":
        return tau0 + (tau1 - tau0) * r
    return tau0 * (tau1 / tau0) ** r


def layer_shapes(c):
    """Published per-layer names and shapes."""
    h, m, Hr = c["hidden_dim"], c["intermediate_dim"], c["target_num_heads"]
    inp = c["source_num_heads"] * c["source_head_dim"]
    out = Hr * c["target_head_dim"]
    shapes = {"key_gate_logit": (), "value_gate_logit": (), "gate_temperature": ()}
    for x in ("key", "value"):
        shapes[f"{x}_in.weight"] = (h, inp + out)
        shapes[f"{x}_in.bias"] = (h,)
        for blk, inner in ((f"{x}_mlp1.blocks.0", m), (f"{x}_scalar_mlp2.blocks.0", h)):
            shapes[f"{blk}.norm.weight"] = (h,)
            shapes[f"{blk}.w1.weight"] = (inner, h)
            shapes[f"{blk}.w2.weight"] = (h, inner)
        shapes[f"{x}_scalar_head.weight"] = (Hr, h)
        shapes[f"{x}_scalar_head.bias"] = (Hr,)
        for j in range(c["num_layers"] - 2):
            blk = f"{x}_proj_mlp2.blocks.{j}"
            shapes[f"{blk}.norm.weight"] = (h,)
            shapes[f"{blk}.w1.weight"] = (m, h)
            shapes[f"{blk}.w2.weight"] = (h, m)
        shapes[f"{x}_proj_out.weight"] = (out, h)
        shapes[f"{x}_proj_out.bias"] = (out,)
    return shapes


def rms_norm(x, scale):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * scale


def gelu_erf(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def ffn(x, W, blk):
    """y = x + W2 GELU(W1 RMSNorm(x)) (dropout 0)."""
    hdn = gelu_erf(rms_norm(x, W[f"{blk}.norm.weight"]) @ W[f"{blk}.w1.weight"].T)
    return x + hdn @ W[f"{blk}.w2.weight"].T


def fuse_branch(W, x, s_cache, r_cache, train, u, c, variant="full"):
    """One branch (x = 'key' or 'value') of one layer. Caches (B, H, N, D)."""
    B, Hs, N, Ds = s_cache.shape
    _, Hr, _, Dr = r_cache.shape
    s_flat = s_cache.permute(0, 2, 1, 3).reshape(B, N, Hs * Ds)  # head-major per token
    r_flat = r_cache.permute(0, 2, 1, 3).reshape(B, N, Hr * Dr)
    if variant == "projection":  # the fuser does not see the receiver: its half is zero
        r_flat = torch.zeros_like(r_flat)
    cat = torch.cat([s_flat, r_flat], dim=-1)
    z = cat @ W[f"{x}_in.weight"].T + W[f"{x}_in.bias"]
    z = ffn(z, W, f"{x}_mlp1.blocks.0")
    p = z
    for j in range(c["num_layers"] - 2):
        p = ffn(p, W, f"{x}_proj_mlp2.blocks.{j}")
    p = p @ W[f"{x}_proj_out.weight"].T + W[f"{x}_proj_out.bias"]  # (B, N, Hr*Dr)
    p = p.reshape(B, N, Hr, Dr).permute(0, 2, 1, 3)  # (B, Hr, N, Dr)
    if variant == "projection":
        return p
    w = ffn(z, W, f"{x}_scalar_mlp2.blocks.0") @ W[f"{x}_scalar_head.weight"].T \
        + W[f"{x}_scalar_head.bias"]  # (B, N, Hr)
    alpha = torch.sigmoid(w).permute(0, 2, 1).unsqueeze(-1)  # (B, Hr, N, 1)
    if variant == "projection_fusion":
        return r_cache + alpha * p
    logit = W[f"{x}_gate_logit"]
    if train:  # u None: no Gumbel noise (train.gate_noise false)
        G = 0.0 if u is None else -torch.log(-torch.log(u + 1e-20) + 1e-20)
        g = torch.sigmoid((logit + G) / W["gate_temperature"])
    else:
        g = (logit > 0).to(p.dtype)
    return r_cache + g * alpha * p


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="full", choices=["full", "projection_fusion", "projection"])
    ap.add_argument("--out", default=None)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    if args.out is None:
        suffix = "" if args.variant == "full" else "_" + args.variant
        args.out = f"tests/fixtures/fuser/fuser_golden{suffix}.safetensors"
    c = CONFIG
    gen = torch.Generator().manual_seed(args.seed)
    f64 = torch.float64

    def rnd(*shape, scale=1.0):
        # Values representable in fp32, so the fp32 file and the float64 math agree exactly.
        return (torch.randn(*shape, generator=gen, dtype=torch.float32) * scale).to(f64)

    Lf, B, N = c["num_fusers"], c["batch"], c["tokens"]
    Hs, Ds, Hr, Dr = (c["source_num_heads"], c["source_head_dim"], c["target_num_heads"],
                      c["target_head_dim"])
    tau = gate_temperature(c["step"], c["initial_temperature"], c["final_temperature"],
                           c["anneal_steps"])
    tau = float(torch.tensor(tau, dtype=torch.float32))  # the fp32 buffer value

    inputs = {
        "sharer_key": rnd(Lf, B, Hs, N, Ds), "sharer_value": rnd(Lf, B, Hs, N, Ds),
        "receiver_key": rnd(Lf, B, Hr, N, Dr), "receiver_value": rnd(Lf, B, Hr, N, Dr),
    }
    u = {"key": torch.rand(Lf, B, Hr, N, 1, generator=gen, dtype=torch.float32).to(f64),
         "value": torch.rand(Lf, B, Hr, N, 1, generator=gen, dtype=torch.float32).to(f64)}
    cot = {"key": rnd(Lf, B, Hr, N, Dr), "value": rnd(Lf, B, Hr, N, Dr)}

    shapes = layer_shapes(c)
    layers = []
    for i in range(Lf):
        W = {}
        for name, shape in shapes.items():
            if name == "gate_temperature":
                W[name] = torch.tensor(tau, dtype=f64)
            elif name.endswith("gate_logit"):
                # Layer 0 both gates open, layer 1 key closed, layer 2 value closed.
                closed = (i == 1 and name.startswith("key")) or (i == 2 and name.startswith("value"))
                W[name] = torch.tensor(-0.7 if closed else 0.4 + 0.1 * i, dtype=f64)
            elif name.endswith("norm.weight"):
                W[name] = 1.0 + rnd(*shape, scale=0.1)
            else:
                fan_in = shape[-1] if len(shape) == 2 else c["hidden_dim"]
                W[name] = rnd(*shape, scale=1.0 / math.sqrt(fan_in))
            if name != "gate_temperature":
                W[name].requires_grad_(True)
        layers.append(W)
    for t in inputs.values():
        t.requires_grad_(True)

    out = {}
    for mode in ("train", "eval"):
        fused = {}
        for x in ("key", "value"):
            fused[x] = torch.stack([
                fuse_branch(layers[i], x, inputs[f"sharer_{x}"][i], inputs[f"receiver_{x}"][i],
                            mode == "train", u[x][i], c, args.variant) for i in range(Lf)])
        out[mode] = fused
    loss = (out["train"]["key"] * cot["key"]).sum() + (out["train"]["value"] * cot["value"]).sum()
    loss.backward()

    tensors = {}
    f32 = lambda t: t.detach().to(torch.float32).contiguous()
    for k, v in inputs.items():
        tensors[k] = f32(v)
        if v.grad is not None:  # projection: the receiver's cache gets none
            tensors[f"grad.{k}"] = f32(v.grad)
    tensors["noise.key_u"] = f32(u["key"])
    tensors["noise.value_u"] = f32(u["value"])
    tensors["cot.key"] = f32(cot["key"])
    tensors["cot.value"] = f32(cot["value"])
    for mode in ("train", "eval"):
        for x in ("key", "value"):
            tensors[f"{mode}.{x}"] = f32(out[mode][x])
    for i, W in enumerate(layers):
        for name, t in W.items():
            tensors[f"layer{i}.{name}"] = f32(t)
            if t.grad is not None:
                tensors[f"grad.layer{i}.{name}"] = f32(t.grad)
    config = dict(c, temperature=tau)
    if args.variant != "full":  # the full golden's metadata stays what it always was
        config["variant"] = args.variant
    meta = {"format_version": FORMAT_VERSION, "config": json.dumps(config),
            "generator": "scripts/fuser_reference.py"}
    save_file(tensors, args.out, metadata=meta)
    print(f"wrote {args.out}: {len(tensors)} tensors, loss {loss.item():.6f}, tau {tau:.6f}")


if __name__ == "__main__":
    main()
