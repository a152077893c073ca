#!/usr/bin/env python3
"""Writes a fuser checkpoint in the official C2C layout (DESIGN.md section 6) with random weights,
for testing `c2c import-official`: <out>/config.json (a stand-in recipe) and <out>/final/ with
projector_{i}.json, projector_{i}.pt (torch.save of a module's state_dict, bf16) and
projector_config.json; plus projector_0_reference.safetensors (projector 0's tensors, to check
the .pt reader against). The state dicts come from a small nn.Module whose attribute names
reproduce the published keys, so the pickles carry the same OrderedDict + _metadata structure.

usage: python3 scripts/make_official_checkpoint.py OUT_DIR [--receiver-layers 4]
       [--sharer-layers 3] [--hidden 32] [--intermediate 32] [--num-layers 3] [--seed 0]
The committed fixture tests/fixtures/fuser/official_tiny was made with the defaults.
"""
import argparse
import json
import os

import torch
from torch import nn


class Scale(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))


class Block(nn.Module):
    def __init__(self, h, m):
        super().__init__()
        self.norm = Scale(h)
        self.w1 = nn.Linear(h, m, bias=False)
        self.w2 = nn.Linear(m, h, bias=False)


class Blocks(nn.Module):
    def __init__(self, h, m, count):
        super().__init__()
        self.blocks = nn.ModuleList([Block(h, m) for _ in range(count)])


class Projector(nn.Module):
    """Only the parameter layout of the published C2CProjector (no forward needed here)."""

    def __init__(self, a):
        super().__init__()
        inp = a["source_dim"] * a["source_num_heads"]
        out = a["target_dim"] * a["target_num_heads"]
        h, m, L = a["hidden_dim"], a["intermediate_dim"], a["num_layers"]
        for x in ("key", "value"):
            setattr(self, f"{x}_in", nn.Linear(inp + out, h))
        for x in ("key", "value"):
            setattr(self, f"{x}_mlp1", Blocks(h, m, 1))
        for x in ("key", "value"):
            setattr(self, f"{x}_scalar_mlp2", Blocks(h, h, 1))
        for x in ("key", "value"):
            setattr(self, f"{x}_scalar_head", nn.Linear(h, a["target_num_heads"]))
        for x in ("key", "value"):
            setattr(self, f"{x}_proj_mlp2", Blocks(h, m, L - 2))
        for x in ("key", "value"):
            setattr(self, f"{x}_proj_out", nn.Linear(h, out))
        self.key_gate_logit = nn.Parameter(torch.tensor(0.0))
        self.value_gate_logit = nn.Parameter(torch.tensor(0.0))
        self.register_buffer("gate_temperature", torch.tensor(a["initial_temperature"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--receiver-layers", type=int, default=4)
    ap.add_argument("--sharer-layers", type=int, default=3)
    ap.add_argument("--source-heads", type=int, default=2)
    ap.add_argument("--source-dim", type=int, default=8)
    ap.add_argument("--target-heads", type=int, default=2)
    ap.add_argument("--target-dim", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--intermediate", type=int, default=32)
    ap.add_argument("--num-layers", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from safetensors.torch import save_file  # here: scripts/check_official_export.py imports Projector
    torch.manual_seed(args.seed)

    init_args = {
        "source_dim": args.source_dim, "target_dim": args.target_dim,
        "source_num_heads": args.source_heads, "target_num_heads": args.target_heads,
        "hidden_dim": args.hidden, "intermediate_dim": args.intermediate,
        "num_layers": args.num_layers, "dropout": 0.1,
        "initial_temperature": 1.0, "final_temperature": 0.001, "anneal_steps": 1929,
    }
    final = os.path.join(args.out, "final")
    os.makedirs(final, exist_ok=True)
    T, S = args.receiver_layers, args.sharer_layers
    mapping = {}
    for t in range(T):
        s = min(max(t + S - T, 0), S - 1)  # last_aligned
        mapping[str(t)] = [[s, t]]          # [sharer layer, fuser index]
        proj = Projector(init_args)
        with torch.no_grad():
            for name, p in proj.named_parameters():
                if name.endswith("gate_logit"):
                    p.fill_(0.25 if (t + name.startswith("value")) % 2 == 0 else -0.25)
                elif name.endswith("norm.weight"):
                    p.add_(0.05 * torch.randn_like(p))
                # Linear weights keep torch's default initialisation.
        proj = proj.to(torch.bfloat16)
        torch.save(proj.state_dict(), os.path.join(final, f"projector_{t}.pt"))
        if t == 0:
            # The same tensors in safetensors, beside final/, so a test can check the .pt reader.
            save_file({k: v.contiguous() for k, v in proj.state_dict().items()},
                      os.path.join(args.out, "projector_0_reference.safetensors"))
        meta = {"class": "C2CProjector",
                "init_args": dict(init_args,
                                  dtype={"__type__": "torch.dtype", "value": "bfloat16"})}
        with open(os.path.join(final, f"projector_{t}.json"), "w") as f:
            json.dump(meta, f, indent=2)
    with open(os.path.join(final, "projector_config.json"), "w") as f:
        json.dump({"0": {"1": mapping}}, f, indent=2)
    recipe = {"model": {"base_model": "test/receiver-tiny", "teacher_model": "test/sharer-tiny"},
              "note": "stand-in recipe written by scripts/make_official_checkpoint.py"}
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(recipe, f, indent=2)
    print(f"wrote {T} projectors to {final}")


if __name__ == "__main__":
    main()
