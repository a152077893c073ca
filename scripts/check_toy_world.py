#!/usr/bin/env python3
"""The toy world's check: does this pair make a world in which C2C can be measured?

Reads the report of `c2c eval` on the world's splits (receiver, sharer and T2T alone; the
check.yaml that scripts/make_toy_world.sh writes) and, with --probe, the JSON of `c2c probe-kv`
(a linear probe of the sharer's cached K/V at the slots the alignment fuses, trained on the
fuser-training people, scored on the held-out ones), and fails, naming every threshold missed and
by how much, unless
  * the receiver answers >= 95% of the questions on the people it knows (`known`),
  * the receiver is near chance on the people it never read about (`heldout`, `fuser_train`,
    `validation` where the world has one): at most chance + 15 points (chance: 1 / the number of
    choices in the split's questions),
  * the sharer answers >= 95% on every split,
  * the probe's best layer and position reaches >= 50% on the held-out people: the sharer's
    cache, not only its text, holds what it recalls, so a fuser has something to carry.
T2T is reported, not checked. Standard library only.

  python3 scripts/check_toy_world.py REPORT_JSON WORLD_DIR [--probe PROBE_JSON] [--failed FILE]

--failed FILE: writes what missed a threshold, one per line (empty when all pass): "receiver"
(known people), "sharer" (its accuracy), "cache" (the probe), "world" (the receiver above chance
on people it never read: no pretraining fixes that), for make_toy_world.sh's rule of continuing
pretraining.
Exit 0: every threshold met; 1: a threshold missed (each named on stderr); 2: bad input.
"""
import json
import os
import sys

RECEIVER_KNOWN = 0.95
SHARER_ALL = 0.95
NEAR_CHANCE = 0.15  # points above chance that still count as "does not know"
PROBE_HELDOUT = 0.50
SPLITS = {"heldout": "eval_heldout.jsonl", "known": "eval_known.jsonl",
          "fuser_train": "eval_fuser_train.jsonl", "validation": "eval_validation.jsonl"}
OPTIONAL_SPLITS = {"validation"}  # worlds made before the validation split have none


def die(msg):
    print(f"check_toy_world: {msg}", file=sys.stderr)
    sys.exit(2)


def chance_of(path):
    """1 / the number of choices of the split's questions (they must agree)."""
    sizes = set()
    try:
        with open(path) as f:
            for line_no, line in enumerate(f, 1):
                if line.strip():
                    try:
                        sizes.add(len(json.loads(line)["choices"]))
                    except (ValueError, KeyError, TypeError) as e:
                        die(f"{path}:{line_no}: not a question with 'choices' ({e})")
    except OSError as e:
        die(f"cannot read {path}: {e}")
    if len(sizes) != 1:
        die(f"{path}: questions with {sorted(sizes) or 'no'} choices; expected one count")
    return 1.0 / sizes.pop()


def parse_args(argv):
    usage = "usage: check_toy_world.py REPORT_JSON WORLD_DIR [--probe PROBE_JSON] [--failed FILE]"
    pos, opts = [], {}
    i = 0
    while i < len(argv):
        if argv[i] in ("--probe", "--failed"):
            if i + 1 >= len(argv):
                die(f"{argv[i]} needs a value\n{usage}")
            opts[argv[i][2:]] = argv[i + 1]
            i += 2
        elif argv[i].startswith("--"):
            die(f"unknown option {argv[i]}\n{usage}")
        else:
            pos.append(argv[i])
            i += 1
    if len(pos) != 2:
        die(usage)
    return pos[0], pos[1], opts.get("probe"), opts.get("failed")


def probe_best(path):
    try:
        with open(path) as f:
            p = json.load(f)
        best = p["best"]
        return float(best["test_accuracy"]), f"layer {best['layer']}, {best['position']}", p.get("alignment", "?")
    except (OSError, ValueError, KeyError, TypeError) as e:
        die(f"{path}: not a c2c probe-kv report ({e})\nHINT: write one with `c2c probe-kv ... --out {path}`")


def main():
    report_path, world, probe_path, failed_path = parse_args(sys.argv[1:])
    try:
        with open(report_path) as f:
            results = json.load(f)["results"]
    except (OSError, ValueError, KeyError) as e:
        die(f"{report_path}: not a c2c eval report ({e})")

    def accuracy(method, split):
        try:
            return float(results[method][split]["accuracy"])
        except (KeyError, TypeError, ValueError):
            die(f"{report_path}: no accuracy for method '{method}' on '{split}'"
                "\nHINT: the check's eval runs methods [receiver, sharer, t2t] on heldout, known, fuser_train")

    splits = {k: v for k, v in SPLITS.items()
              if k not in OPTIONAL_SPLITS or os.path.exists(os.path.join(world, v))}
    checks = []  # (model, what, value, bound, passes)
    for split, name in splits.items():
        chance = chance_of(os.path.join(world, name))
        r = accuracy("receiver", split)
        if split == "known":
            checks.append(("receiver", f"receiver on {split} >= {RECEIVER_KNOWN:.0%}", r, RECEIVER_KNOWN,
                           r >= RECEIVER_KNOWN))
        else:
            bound = chance + NEAR_CHANCE
            # Not a model to pretrain longer: the world itself leaks (or the receiver guesses well).
            checks.append(("world", f"receiver on {split} <= chance {chance:.0%} + {NEAR_CHANCE:.0%}", r, bound,
                           r <= bound))
        s = accuracy("sharer", split)
        checks.append(("sharer", f"sharer on {split} >= {SHARER_ALL:.0%}", s, SHARER_ALL, s >= SHARER_ALL))
    if probe_path:
        p, where, align = probe_best(probe_path)
        checks.append(("cache", f"probe of the sharer's K/V ({align} slots; best: {where}) on heldout >= "
                                 f"{PROBE_HELDOUT:.0%}", p, PROBE_HELDOUT, p >= PROBE_HELDOUT))
    failed = 0
    for _, what, value, bound, ok in checks:
        margin = (value - bound) * 100
        print(f"{'PASS' if ok else 'FAIL'}  {what}: {value:.1%} ({margin:+.1f} points)")
        failed += not ok
    for split in splits:
        if "t2t" in results and split in results["t2t"]:
            print(f"info  t2t on {split}: {accuracy('t2t', split):.1%}")
    if failed_path:
        models = sorted({m for m, _, _, _, ok in checks if not ok})
        with open(failed_path, "w") as f:
            f.write("".join(m + "\n" for m in models))
    if failed:
        print(f"check_toy_world: the world fails {failed} of {len(checks)} thresholds (above); "
              "no fuser should be trained on it\nHINT: pretrain longer or with another seed "
              "(scripts/make_toy_world.sh), or see README 'The toy world'", file=sys.stderr)
        sys.exit(1)
    print(f"check_toy_world: all {len(checks)} thresholds met")


if __name__ == "__main__":
    main()
