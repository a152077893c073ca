#!/usr/bin/env python3
"""Converts published multiple-choice benchmarks, downloaded locally, to the JSON Lines that
`c2c eval` reads (data/benchmark.h):

    {"id": "...", "subject": "...", "question": "...", "choices": ["...", ...], "answer": "B"}

    python3 scripts/convert_benchmarks.py --benchmark mmlu-redux --input PATH --output mmlu-redux.jsonl
        [--subject NAME] [--split test|validation|val|dev|train|all]

Benchmarks (Hugging Face names) and the fields read:
  mmlu-redux     edinburgh-dawg/mmlu-redux   question, choices, answer (0-based index); rows whose
                                             error_type is not "ok" are skipped and counted
  openbookqa     allenai/openbookqa (main)   question_stem, choices{text,label}, answerKey
  arc-challenge  allenai/ai2_arc (ARC-Challenge)  question, choices{text,label}, answerKey
                                             (labels may be "1".."4")
  ceval          ceval/ceval-exam (dev/val)  question, A, B, C, D, answer (test has no answers)

PATH is a file (.parquet, .jsonl, .json, .csv, .arrow) or a folder: a `save_to_disk` data set
(Dataset or DatasetDict), a Hugging Face snapshot with per-subject folders of parquet files, or any
tree of such files. Files of other splits are left out by their names (`--split`, default test;
val for C-Eval; `all` keeps every file). The subject is --subject, else the row's "subject", else
(MMLU-Redux, C-Eval) the per-subject folder or file name, else "all".
Needs only the standard library for JSON/CSV; parquet and arrow need pyarrow (`datasets` is used
for `save_to_disk` folders when importable). Prints what it wrote and what it skipped, and why.
"""
import argparse
import collections
import csv
import json
import os
import re
import sys

BENCHMARKS = ("mmlu-redux", "openbookqa", "arc-challenge", "ceval")
DEFAULT_SPLIT = {"mmlu-redux": "test", "openbookqa": "test", "arc-challenge": "test", "ceval": "val"}
SPLIT_WORDS = {"train", "test", "validation", "val", "dev"}
SPLIT_SYNONYMS = {"val": {"val", "validation"}, "validation": {"val", "validation"}}
DATA_EXTS = (".parquet", ".jsonl", ".json", ".csv", ".arrow")
HF_METADATA = {"dataset_info.json", "dataset_infos.json", "state.json", "dataset_dict.json"}
MAX_CHOICES = 26


class Skip(Exception):
    """A row that cannot be used; the message is the reason counted in the summary."""


def die(msg):
    sys.exit(f"convert_benchmarks: {msg}")


# ---- finding and reading the input ------------------------------------------------------------

class Unit:
    """One readable piece of the input: a data file or a save_to_disk Dataset folder."""

    def __init__(self, kind, path, parts):
        self.kind = kind      # "hf_dataset" or a file extension
        self.path = path
        self.parts = parts    # path parts used for the split filter and the subject

    def label(self):
        return "/".join(self.parts)


def find_units(root):
    if os.path.isfile(root):
        ext = os.path.splitext(root)[1].lower()
        if ext not in DATA_EXTS:
            die(f"{root}: unknown file type {ext!r} (HINT: give .parquet, .jsonl, .json, .csv or .arrow)")
        return [Unit(ext, root, [os.path.splitext(os.path.basename(root))[0]])]
    if not os.path.isdir(root):
        die(f"--input {root} does not exist (HINT: download the data set first, e.g. "
            "`huggingface-cli download --repo-type dataset NAME --local-dir DIR`)")
    base = os.path.basename(os.path.normpath(root))
    units = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = os.path.relpath(dirpath, root)
        parts = [base] + ([] if rel == "." else rel.split(os.sep))
        if "dataset_dict.json" in filenames:       # save_to_disk of a DatasetDict: one unit per split
            for d in dirnames:
                if os.path.exists(os.path.join(dirpath, d, "state.json")):
                    units.append(Unit("hf_dataset", os.path.join(dirpath, d), parts + [d]))
            dirnames[:] = []
            continue
        if "state.json" in filenames:              # save_to_disk of one Dataset
            units.append(Unit("hf_dataset", dirpath, parts))
            dirnames[:] = []
            continue
        for f in sorted(filenames):
            ext = os.path.splitext(f)[1].lower()
            if f.startswith(".") or ext not in DATA_EXTS or f in HF_METADATA:
                continue
            units.append(Unit(ext, os.path.join(dirpath, f), parts + [os.path.splitext(f)[0]]))
    return units


def tokens(parts):
    out = set()
    for p in parts:
        out.update(t for t in re.split(r"[-_.\s]+", p.lower()) if t)
    return out


def keep_split(unit, split, root_is_file):
    if split == "all" or root_is_file:
        return True
    toks = tokens(unit.parts)
    if not toks & SPLIT_WORDS:
        return True  # no split in the name: nothing to filter on
    return bool(toks & SPLIT_SYNONYMS.get(split, {split}))


def unit_split(unit):
    toks = tokens(unit.parts)
    for s in ("dev", "val", "validation", "test", "train"):
        if s in toks:
            return s
    return ""


def import_optional(name):
    try:
        return __import__(name)
    except ImportError:
        return None


def need_pyarrow(path):
    pa = import_optional("pyarrow")
    if pa is None:
        die(f"{path}: reading this needs pyarrow (HINT: pip install pyarrow, or give JSON Lines)")
    return pa


def read_arrow_stream(path):
    pa = need_pyarrow(path)
    import pyarrow.ipc  # noqa: F401  (submodule)
    with pa.memory_map(path) as source:
        try:
            table = pa.ipc.open_stream(source).read_all()   # what save_to_disk writes
        except pa.lib.ArrowInvalid:
            table = pa.ipc.open_file(source).read_all()
    return table.to_pylist()


def read_rows(unit):
    p = unit.path
    if unit.kind == "hf_dataset":
        datasets = import_optional("datasets")
        if datasets is not None:
            return list(datasets.load_from_disk(p))
        with open(os.path.join(p, "state.json")) as f:
            state = json.load(f)
        rows = []
        for entry in state.get("_data_files", []):
            rows.extend(read_arrow_stream(os.path.join(p, entry["filename"])))
        return rows
    if unit.kind == ".parquet":
        need_pyarrow(p)
        import pyarrow.parquet as pq
        return pq.read_table(p).to_pylist()
    if unit.kind == ".arrow":
        return read_arrow_stream(p)
    if unit.kind == ".csv":
        with open(p, newline="", encoding="utf-8-sig") as f:
            return list(csv.DictReader(f))
    with open(p, encoding="utf-8-sig") as f:
        text = f.read()
    if unit.kind == ".json" and text.lstrip().startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            die(f"{p}: not valid JSON: {e}")
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            rows.append(Skip(f"bad JSON on line {n} ({e.msg})"))
    return rows


# ---- subjects ---------------------------------------------------------------------------------

GENERIC_NAME = re.compile(r"(|data|default|main|all|snapshots|datasets|[0-9a-f]{40}|\d+|datasets--.*|"
                          r"mmlu[-_]?redux.*|c-?eval.*|ai2_arc|openbookqa)$")


def subject_from_parts(parts):
    """The nearest path part that names a subject: 'anatomy/test-00000-of-00001' -> 'anatomy',
    'val/computer_network_val' -> 'computer_network'."""
    for part in reversed(parts):
        s = re.sub(r"-\d{5}-of-\d{5}$", "", part)
        s = re.sub(r"^(train|test|validation|val|dev)([-_.]|$)", "", s)
        s = re.sub(r"([-_.])(train|test|validation|val|dev)$", "", s)
        if s.lower() in SPLIT_WORDS or GENERIC_NAME.match(s.lower()):
            continue
        return s
    return ""


# ---- one row per benchmark --------------------------------------------------------------------

def as_text(v, what):
    if isinstance(v, bool) or v is None:
        raise Skip(f"{what} missing")
    if isinstance(v, (int, float)):
        v = str(v)
    if not isinstance(v, str):
        raise Skip(f"{what} is not text")
    if not v.strip():
        raise Skip(f"{what} empty")
    return v


def field(row, key):
    if key not in row or row[key] is None:
        raise Skip(f"no {key}")
    return row[key]


def labelled_choices(row):
    ch = field(row, "choices")
    if isinstance(ch, str):
        try:
            ch = json.loads(ch)
        except json.JSONDecodeError:
            raise Skip("choices not readable")
    if not isinstance(ch, dict) or "text" not in ch or "label" not in ch:
        raise Skip("choices not {text, label}")
    texts, labels = list(ch["text"]), [str(x).strip() for x in ch["label"]]
    if len(texts) != len(labels):
        raise Skip("choices text/label lengths differ")
    key = str(field(row, "answerKey")).strip()
    if key not in labels:
        raise Skip("answerKey not among the labels")
    return texts, labels.index(key)


def convert_mmlu_redux(row):
    question = field(row, "question")
    choices = field(row, "choices")
    if isinstance(choices, str):
        try:
            choices = json.loads(choices)
        except json.JSONDecodeError:
            raise Skip("choices not readable")
    a = field(row, "answer")
    if isinstance(a, str) and a.strip().isdigit():
        a = int(a)
    elif isinstance(a, str) and len(a.strip()) == 1 and a.strip().isalpha():
        a = ord(a.strip().upper()) - ord("A")
    if not isinstance(a, int) or isinstance(a, bool):
        raise Skip("answer not an index")
    return question, list(choices), a


def convert_ceval(row):
    choices = [row.get(k) for k in "ABCD"]
    a = row.get("answer")
    if a is None or not str(a).strip():
        raise Skip("no answer (the test split has none)")
    a = str(a).strip().upper()
    if len(a) != 1 or not "A" <= a <= "Z":
        raise Skip("answer not a letter")
    return field(row, "question"), choices, ord(a) - ord("A")


def convert_row(bench, row):
    if bench == "mmlu-redux":
        question, choices, answer = convert_mmlu_redux(row)
    elif bench == "openbookqa":
        choices, answer = labelled_choices(row)
        question = field(row, "question_stem")
    elif bench == "arc-challenge":
        choices, answer = labelled_choices(row)
        question = field(row, "question")
    else:
        question, choices, answer = convert_ceval(row)
    question = as_text(question, "question")
    if not 2 <= len(choices) <= MAX_CHOICES:
        raise Skip(f"{len(choices)} choices (need 2..{MAX_CHOICES})")
    choices = [as_text(c, "choice") for c in choices]
    if not 0 <= answer < len(choices):
        raise Skip("answer outside the choices")
    return question, choices, answer


# ---- main -------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--benchmark", required=True, choices=BENCHMARKS)
    ap.add_argument("--input", required=True, help="a data file or a folder (see above)")
    ap.add_argument("--output", required=True, help="the JSON Lines file to write")
    ap.add_argument("--subject", default=None, help="subject of every item")
    ap.add_argument("--split", default=None, help="split to keep when reading a folder "
                    "(default: test; val for ceval; 'all' keeps every file)")
    args = ap.parse_args()
    bench = args.benchmark
    split = (args.split or DEFAULT_SPLIT[bench]).lower()
    if args.subject is not None and not args.subject.strip():
        die("--subject is empty")

    root_is_file = os.path.isfile(args.input)
    all_units = find_units(args.input)
    units = [u for u in all_units if keep_split(u, split, root_is_file)]
    if not units:
        found = ", ".join(u.label() for u in all_units[:5]) or "no data files"
        die(f"nothing to read under {args.input} for split {split!r} (found: {found})\n"
            f"HINT: give --split (test, validation, val, dev, train or all) or point --input at the files")

    items, used_ids = [], set()
    skipped = collections.Counter()
    unfiltered, no_subject, renamed = 0, 0, 0
    for unit in units:
        rows = read_rows(unit)
        path_subject = subject_from_parts(unit.parts) if bench in ("mmlu-redux", "ceval") else ""
        split_name = unit_split(unit)
        written = 0
        for i, row in enumerate(rows):
            try:
                if isinstance(row, Skip):
                    raise row
                if not isinstance(row, dict):
                    raise Skip("row is not an object")
                if bench == "mmlu-redux":
                    if "error_type" not in row:
                        unfiltered += 1
                    elif row["error_type"] != "ok":
                        raise Skip(f"error_type={row['error_type']}")
                question, choices, answer = convert_row(bench, row)
            except Skip as e:
                skipped[str(e)] += 1
                continue
            row_subject = row.get("subject") if isinstance(row.get("subject"), str) else ""
            subject = args.subject or row_subject.strip() or path_subject or "all"
            if bench in ("mmlu-redux", "ceval") and subject == "all":
                no_subject += 1
            if bench in ("openbookqa", "arc-challenge") and row.get("id") is not None:
                item_id = f"{bench}/{row['id']}"
            else:
                local = row.get("id") if row.get("id") is not None else i
                item_id = "/".join(x for x in (bench, subject, split_name, str(local)) if x)
            base, n = item_id, 1
            while item_id in used_ids:
                n += 1
                item_id = f"{base}#{n}"
            renamed += n > 1
            used_ids.add(item_id)
            items.append({"id": item_id, "subject": subject, "question": question, "choices": choices,
                          "answer": chr(ord("A") + answer)})
            written += 1
        print(f"  {unit.label()}: {len(rows)} rows, {written} written, {len(rows) - written} skipped")

    if not items:
        die(f"no usable rows in {args.input} ({sum(skipped.values())} skipped: "
            f"{dict(skipped)})\nHINT: check --benchmark matches the data set")
    out_dir = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(out_dir, exist_ok=True)
    tmp = args.output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    os.replace(tmp, args.output)

    subjects = collections.Counter(item["subject"] for item in items)
    total_skipped = sum(skipped.values())
    print(f"{bench}: wrote {len(items)} items ({len(subjects)} subject(s)) to {args.output}; "
          f"skipped {total_skipped} row(s)")
    for reason, n in sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0])):
        if n:
            print(f"  skipped {n}: {reason}")
    if renamed:
        print(f"  note: {renamed} repeated id(s) got a '#N' suffix")
    if unfiltered:
        print(f"  warning: {unfiltered} row(s) have no error_type column and were kept unfiltered "
              "(is this MMLU-Redux?)")
    if no_subject:
        print(f"  warning: {no_subject} item(s) have no subject in the rows or path and got 'all' "
              "(HINT: --subject NAME, or convert the per-subject folders)")


if __name__ == "__main__":
    main()
