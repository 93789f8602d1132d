"""No personal data of migrants: the Fund's results are aggregate figures. One detector for
every service that takes free text (concept notes, progress reports).

It looks for names of individuals, birth dates, passport and phone numbers, and answers with
the field and the kind of data, never the data itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from shared.contracts.intake import Reason

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("phone number", re.compile(
        r"(?:\+|\b00)\d{1,3}[\s.-]?\(?\d{1,4}\)?(?:[\s.-]?\d{2,4}){2,4}\b"
        r"|\b(?:tel|phone|mobile|cell|whatsapp)\b\s*(?:no\.?|number|#)?\s*[:#]?\s*\+?\d[\d\s().-]{6,}\d",
        re.I)),
    ("passport number", re.compile(
        r"\bpassport\s*(?:no\.?|number|num|#)?\s*[:#]?\s*[A-Z]{0,2}\d[A-Z0-9]{5,8}\b"
        r"|\bP<[A-Z]{3}[A-Z<]{5,}", re.I)),
    ("birth date", re.compile(
        r"\b(?:born(?:\s+on)?|date\s+of\s+birth|d\.?o\.?b\.?|birth\s*date)\b\s*[:,]?\s*"
        r"(?:\d{1,4}[./-]\d{1,2}[./-]\d{1,4}|\d{1,2}\s+[A-Za-z]{3,9}\.?\s+\d{4}"
        r"|[A-Za-z]{3,9}\.?\s+\d{1,2},?\s+\d{4})", re.I)),
    ("name of an individual", re.compile(
        r"\b(?:Mr|Mrs|Ms|Miss|Mx)\.?\s+[A-Z][a-z'-]+"
        r"|\b(?:migrant|beneficiary|child|refugee|victim|person|individual)\s+(?:named|called)"
        r"\s+[A-Z][a-z'-]+"
        r"|\b(?:full\s+name|surname|first\s+name|last\s+name)\s*[:=]\s*[A-Z][a-z'-]+")),
]


def _strings(obj: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(obj, str):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            yield from _strings(v, f"{path}.{i}" if path else str(i))


def find_personal_data(data: Any) -> list[Reason]:
    """Fields that carry personal data of individuals (names, birth dates, passport or phone
    numbers). Results must be aggregates; the Fund stores no personal data of migrants. The
    reasons name the field and the kind of data, never the data itself."""
    out = []
    for path, text in _strings(data):
        for kind, pattern in _PATTERNS:
            if pattern.search(text):
                out.append(Reason(code="personal-data", field=path, message=(
                    f"this field appears to contain a {kind} of an individual; report "
                    "aggregate figures only")))
    return out


def redact(data: Any, reasons: list[Reason]) -> Any:
    """A copy of `data` with every field named by `reasons` replaced."""
    paths = {r.field for r in reasons}

    def walk(obj: Any, path: str) -> Any:
        if path in paths:
            return "[redacted: personal data]"
        if isinstance(obj, dict):
            return {k: walk(v, f"{path}.{k}" if path else str(k)) for k, v in obj.items()}
        if isinstance(obj, list):
            return [walk(v, f"{path}.{i}" if path else str(i)) for i, v in enumerate(obj)]
        return obj

    return walk(data, "")


