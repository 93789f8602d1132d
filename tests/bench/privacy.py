"""The personal-data guard on the labelled corpus (tests/data/privacy_corpus.jsonl):
precision and recall per category and language, and the misses and false alarms.

    .venv/bin/python -m tests.bench.privacy [--show]

Recall of a category: its snippets flagged (as anything). Precision: of the ordinary
snippets and the other categories' snippets, how many flagged ones really hold personal data.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from shared.privacy import kinds_in

CORPUS = Path(__file__).resolve().parents[1] / "data" / "privacy_corpus.jsonl"


def measure() -> dict[str, Any]:
    rows = [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]
    found = [(r, kinds_in(r["text"])) for r in rows]
    out: dict[str, Any] = {"snippets": len(rows), "by_category": {}, "by_language": {},
                           "misses": [], "false_alarms": []}
    groups: dict[tuple[str, str], list[tuple[dict[str, Any], list[str]]]] = defaultdict(list)
    for r, kinds in found:
        groups[("category", r["category"])].append((r, kinds))
        groups[("language", r["lang"])].append((r, kinds))
        if r["personal"] and not kinds:
            out["misses"].append(r["text"])
        if not r["personal"] and kinds:
            out["false_alarms"].append((r["text"], kinds))
    negatives = [(r, k) for r, k in found if not r["personal"]]
    false_alarms = sum(1 for _, k in negatives if k)
    for (axis, name), items in sorted(groups.items()):
        pos = [k for r, k in items if r["personal"]]
        neg = [k for r, k in items if not r["personal"]]
        caught = sum(1 for k in pos if k)
        # a category's precision: its true hits against every false alarm of the corpus
        alarms = sum(1 for k in neg if k) if axis == "language" else false_alarms
        row = {"positives": len(pos), "negatives": len(neg),
               "recall": round(caught / len(pos), 4) if pos else None,
               "precision": round(caught / (caught + alarms), 4) if caught + alarms else None}
        if axis == "category" and name == "none":
            row = {"negatives": len(neg), "false_alarms": false_alarms}
        out[f"by_{axis}"][name] = row
    pos = [k for r, k in found if r["personal"]]
    caught = sum(1 for k in pos if k)
    out["recall"] = round(caught / len(pos), 4)
    out["precision"] = round(caught / (caught + false_alarms), 4)
    return out


if __name__ == "__main__":
    res = measure()
    show = "--show" in sys.argv
    if not show:
        res.pop("misses")
        res.pop("false_alarms")
    json.dump(res, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")
