#!/usr/bin/env python3
"""Loads an exported official C2C fuser folder with PyTorch as the reference code would: every
final/projector_{i}.pt with torch.load(..., weights_only=True), checks it is an OrderedDict with
_metadata, and load_state_dict(strict=True) into a module built from projector_{i}.json with the
published names and shapes (the Projector of make_official_checkpoint.py: key_/value_ branches of
in, mlp1, scalar_mlp2, scalar_head, proj_mlp2, proj_out, the gate logits and the
gate_temperature buffer); checks projector_config.json refers to every projector and config.json names the models.
Exit 0 and one line per projector when all load.

usage: python3 scripts/check_official_export.py OUT_DIR
"""
import collections
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_official_checkpoint import Projector  # noqa: E402  the published names and shapes


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    final = os.path.join(out, "final")
    mapping = json.load(open(os.path.join(final, "projector_config.json")))
    used = sorted(pair[1] for sharers in mapping.values() for layers in sharers.values()
                  for pairs in layers.values() for pair in pairs)
    config = json.load(open(os.path.join(out, "config.json")))
    assert "base_model" in config["model"] and "teacher_model" in config["model"], "config.json model names"
    for i in used:
        spec = json.load(open(os.path.join(final, f"projector_{i}.json")))
        assert spec["class"] == "C2CProjector", spec
        args = spec["init_args"]
        dtype = getattr(torch, args["dtype"]["value"])
        state = torch.load(os.path.join(final, f"projector_{i}.pt"), weights_only=True)
        assert isinstance(state, collections.OrderedDict), type(state)
        assert hasattr(state, "_metadata") and "" in state._metadata, "no _metadata"
        module = Projector(args).to(dtype)
        module.load_state_dict(state, strict=True)
        print(f"projector_{i}: {len(state)} tensors, {sum(t.numel() for t in state.values())} values, "
              f"{args['dtype']['value']}, loaded strictly")
    print(f"ok: {len(used)} projectors")


if __name__ == "__main__":
    main()
