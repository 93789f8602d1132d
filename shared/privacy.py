"""No personal data of migrants: the Fund's results are aggregate figures. One detector for
every service that takes free text (concept notes, progress reports, withdrawal reasons,
decision rationales, directory entries), over HTTP and Kafka alike.

It looks, in English, French and Spanish, for: e-mail addresses; phone numbers (international
ones validated by `phonenumbers`, local ones when a word such as "tel." or "móvil" introduces
them); passport and national identity numbers; dates of birth; individuals named with
identifying context (a name with an age or nationality, a title, "the migrant ..."). It
answers with the field and the kind of data, never the data itself. The labelled corpus in
tests/data/privacy_corpus.jsonl and `python -m tests.bench.privacy` measure it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from shared.jsondepth import too_deep

if TYPE_CHECKING:  # imported when used: the contracts' own validation calls this module
    from shared.contracts.intake import Reason

_UP = "A-ZÀ-ÖØ-Þ"
_LOW = "a-zß-öø-ÿ"
_NAME = rf"[{_UP}][{_LOW}'’-]+"
_NAMES = rf"{_NAME}(?:\s+(?:de\s+la\s+|de\s+|del\s+|van\s+|al-|el-)?{_NAME}){{1,3}}"
_MONTHS = (r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec|january|february|march|"
           r"april|june|july|august|september|october|november|december|janvier|février|fevrier|"
           r"mars|avril|mai|juin|juillet|août|aout|septembre|octobre|novembre|décembre|decembre|"
           r"enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|setiembre|octubre|"
           r"noviembre|diciembre)")
_DATE = (rf"(?:\d{{1,4}}[./-]\d{{1,2}}[./-]\d{{1,4}}|\d{{1,2}}(?:er|º|°)?\s+(?:de\s+)?{_MONTHS}"
         rf"\.?,?\s+(?:de\s+)?\d{{4}}|{_MONTHS}\.?\s+\d{{1,2}},?\s+\d{{4}})")
_ID_NUMBER = r"[A-Z]{0,3}[\s-]?\d[A-Z0-9-]{4,17}"

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("e-mail address", re.compile(
        r"(?<![\w.%+-])[\w.%+-]+\s*(?:@|\(at\)|\[at\])\s*[A-Za-z0-9-]+(?:\s*(?:\.|\(dot\)|\[dot\])"
        r"\s*[A-Za-z0-9-]+)*\s*(?:\.|\(dot\)|\[dot\])\s*[A-Za-z]{2,}\b")),
    ("phone number", re.compile(
        r"\b(?:tel|tél|teléfono|telefono|téléphone|telephone|phone|mobile|portable|móvil|movil|"
        r"celular|cell|whatsapp|contacto|contact|numéro|número|number|no)\b\.?\s*"
        r"(?:no\.?|n°|nº|number|numéro|número|#)?\s*[:#]?\s*\+?\(?\d[\d\s().-]{6,}\d", re.I)),
    ("passport or identity number", re.compile(
        r"\b(?:passport|passeport|pasaporte|national\s+id(?:entity)?(?:\s+card)?|id\s+card|"
        r"identity\s+card|carte\s+(?:nationale\s+)?d'identité|cni|numéro\s+d'identité|"
        r"dni|nie|cédula|cedula|curp|documento\s+(?:nacional\s+)?de\s+identidad|"
        r"social\s+security(?:\s+number)?|ssn|alien\s+registration|residence\s+permit|"
        r"titre\s+de\s+séjour|permiso\s+de\s+residencia|refugee\s+id|"
        r"unhcr\s+(?:case|registration)|case\s+number|numéro\s+de\s+dossier)\b\s*"
        r"(?:no\.?|n°|nº|n\.º|num(?:ber|éro|ero)?|número|#|:|\s)*\s*[:#]?\s*" + _ID_NUMBER,
        re.I)),
    ("passport or identity number", re.compile(r"\bP<[A-Z]{3}[A-Z<]{5,}")),  # an MRZ line
    ("birth date", re.compile(
        r"\b(?:born(?:\s+on)?|date\s+of\s+birth|d\.?o\.?b\.?|birth\s*date|birthday|"
        r"née?\s+le|date\s+de\s+naissance|nacid[oa]\s+el|fecha\s+de\s+nacimiento|"
        r"f\.\s*de\s*nac\.?)\b\s*[:,]?\s*" + _DATE, re.I)),
]


# Names need their capitals: the pattern is case-sensitive, its keywords are not ((?i:...)).
_NAME_PATTERN = re.compile(
    # a title before a name
    rf"\b(?i:Mr|Mrs|Ms|Miss|Mx|Mme|Mlle|Sr|Sra|Srta|Don|Doña)\.?\s+{_NAME}"
    # a name with an age: "Maria Lopez Garcia, 34," "Ahmed Ali (17)" "Jean Dupont, aged 40"
    rf"|\b{_NAMES}\s*(?:,\s*|\(\s*)(?i:aged\s+|âgée?\s+de\s+|de\s+)?\d{{1,2}}\s*"
    rf"(?:\)|,|\s+(?i:years?|yrs|ans|años)\b|\s*$)"
    # a name with a nationality or origin: "Maria Lopez, a Honduran national", "X, from Y"
    rf"|\b{_NAMES}\s*,\s*(?:(?i:an?)\s+[{_UP}][{_LOW}]+\s+(?i:national|citizen|migrant|"
    rf"refugee|woman|man|girl|boy)|(?i:from)\s+[{_UP}][{_LOW}]+|(?i:originaire\s+d[eu'])\s*"
    rf"[{_UP}]|(?i:de\s+nacionalidad|de\s+nationalité)\s+[{_LOW}]+)"
    # "the migrant Ahmed ...", "la migrante Rosa ...", "el solicitante Juan ..."
    rf"|\b(?i:(?:the\s+)?(?:migrant|beneficiary|child|refugee|victim|returnee|asylum\s+seeker)|"
    rf"le\s+migrant|la\s+migrante|le\s+bénéficiaire|la\s+bénéficiaire|la\s+victime|"
    rf"el\s+migrante|el\s+beneficiario|la\s+beneficiaria|la\s+víctima|"
    rf"el\s+solicitante|la\s+solicitante)\s+(?:(?i:named|called|nommée?|llamad[oa])\s+"
    rf"{_NAME}|{_NAME}\s+{_NAME})"
    # a labelled name
    rf"|\b(?i:full\s+name|surname|first\s+name|last\s+name|given\s+name|nom\s+de\s+famille|"
    rf"prénom|nombre\s+completo|apellidos?|nombre)\s*[:=]\s*{_NAME}")


# "+" or "00" opening a number, not inside a word or an identifier ("jp-5e1500a9...")
_INTL_PREFIX = re.compile(r"(?<![\w.,+-])(?:\+|00)\s*\(?[1-9]")


def _intl_phone(text: str) -> bool:
    """An international number ("+63 917 123 4567", "0033 6 12 34 56 78") that
    `phonenumbers` finds possible for its country (its length fits the country's plan)."""
    if not _INTL_PREFIX.search(text):  # cheap first: most text has no "+" nor leading 00
        return False
    import phonenumbers

    candidate = re.sub(r"(?<![\w.,+-])00(?=[1-9]\d)", "+", text)
    for m in phonenumbers.PhoneNumberMatcher(candidate, None,
                                             leniency=phonenumbers.Leniency.POSSIBLE):
        # a number standing alone, not the head of an identifier ("00535099-6b45-...")
        after = candidate[m.end:m.end + 2]
        if re.match(r"-?[A-Za-z0-9]", after) or (m.start and candidate[m.start - 1].isalnum()):
            continue
        if phonenumbers.is_possible_number(m.number):
            return True
    return False


def kinds_in(text: str) -> list[str]:
    """The kinds of personal data found in one piece of text (each kind once)."""
    found: list[str] = []
    for kind, pattern in _PATTERNS:
        if kind not in found and pattern.search(text):
            found.append(kind)
    if _intl_phone(text) and "phone number" not in found:
        found.append("phone number")
    if _NAME_PATTERN.search(text):
        found.append("name of an individual")
    return found


def _strings(obj: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(obj, str):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            yield from _strings(v, f"{path}.{i}" if path else str(i))


PERSONAL_DATA = "personal-data"  # the code of the reasons below


def find_personal_data(data: Any) -> list[Reason]:
    """Fields that carry personal data of individuals. Results must be aggregates; the Fund
    stores no personal data of migrants. The reasons name the field and the kind of data,
    never the data itself."""
    from shared.contracts.intake import Reason

    out = []
    for path, text in _strings(data):
        for kind in kinds_in(text):
            out.append(Reason(code=PERSONAL_DATA, field=path or "(body)", message=(
                f"this field appears to contain personal data ({kind}); the Fund keeps "
                "no personal data of migrants: report aggregate figures only")))
    return out


def redact(data: Any, reasons: list[Reason]) -> Any:
    """A copy of `data` with every field named by `reasons` replaced."""
    paths = {r.field for r in reasons}

    def walk(obj: Any, path: str) -> Any:
        if (path or "(body)") in paths and not isinstance(obj, dict | list):
            return "[redacted: personal data]"
        if isinstance(obj, dict):
            return {k: walk(v, f"{path}.{k}" if path else str(k)) for k, v in obj.items()}
        if isinstance(obj, list):
            return [walk(v, f"{path}.{i}" if path else str(i)) for i, v in enumerate(obj)]
        return obj

    return walk(data, "")


def redacted_bytes(value: bytes | None) -> bytes | None:
    """The bytes of a record with any personal data redacted, or None when it holds none:
    what may be kept of a record that goes to a dead-letter topic whatever else is wrong
    with it. Undecodable bytes are searched as text, and dropped whole on a hit."""
    if not value:
        return None
    try:
        if too_deep(value):  # (not walked value by value: searched as text, below)
            raise ValueError("nested too deeply")
        data = json.loads(value)
    except ValueError:
        text = value.decode("utf-8", "replace")
        return b'"[redacted: personal data]"' if kinds_in(text) else None
    hits = find_personal_data(data)
    return json.dumps(redact(data, hits)).encode() if hits else None
