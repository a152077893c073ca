#!/usr/bin/env python3
"""Writes recipes/demo/conversations.jsonl: short synthetic chats for the embedded demo.

Each conversation asks about a made-up entity's attribute; the answers follow a fixed pattern so a
tiny fuser has something learnable. Deterministic (seeded); re-run to regenerate.
"""
import json
import os
import random

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "recipes", "demo", "conversations.jsonl")

SYLLABLES = ["ka", "lo", "mi", "ren", "tu", "sa", "vel", "do", "ri", "an", "po", "zu"]
CITIES = ["Arden", "Belmora", "Corvid", "Dunmere", "Elstow", "Farrow"]
PETS = ["cat", "dog", "owl", "fox", "hare", "newt"]


def name(rng):
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()


def main():
    rng = random.Random(7)
    rows = []
    for _ in range(96):
        who, city, pet = name(rng), rng.choice(CITIES), rng.choice(PETS)
        if rng.random() < 0.5:
            q, a = f"{who} lives in {city}. Where does {who} live?", f"{who} lives in {city}."
        else:
            q, a = f"{who} keeps a {pet}. What pet does {who} keep?", f"{who} keeps a {pet}."
        rows.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    print(f"wrote {len(rows)} conversations to {OUT}")


if __name__ == "__main__":
    main()
