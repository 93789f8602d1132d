"""The IATI Standard's rules as our rules module states them: each breach is named, and the
export's own pieces (budget periods of at most a year, money spread to the cent, text XML
can carry) keep them."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

from hypothesis import given
from hypothesis import strategies as st

from services.monitoring.iati import clean, periods, spread
from services.monitoring.iati_rules import problems

GOOD = b"""<iati-activities version="2.03" generated-datetime="2026-11-28T10:00:00+00:00">
<iati-activity default-currency="USD"><iati-identifier>XM-DAC-41114-MIG00-jp-1</iati-identifier>
<reporting-org ref="XM-DAC-41114" type="40"><narrative>AA</narrative></reporting-org>
<activity-status code="2"/>
<activity-date iso-date="2026-01-15" type="1"/><activity-date iso-date="2026-02-01" type="2"/>
<activity-date iso-date="2027-12-31" type="3"/>
<recipient-country code="PH" percentage="60"/><recipient-country code="MX" percentage="40"/>
<sector code="15190" vocabulary="1" percentage="100"/>
<budget type="1" status="2"><period-start iso-date="2026-02-01"/><period-end iso-date="2027-01-31"/>
<value currency="USD" value-date="2026-02-01">100.00</value></budget>
<budget type="1" status="2"><period-start iso-date="2027-02-01"/><period-end iso-date="2027-12-31"/>
<value currency="USD" value-date="2027-02-01">90.00</value></budget>
<transaction><transaction-type code="3"/><transaction-date iso-date="2026-02-01"/>
<value currency="USD" value-date="2026-02-01">10.00</value></transaction>
</iati-activity></iati-activities>"""


def test_a_document_that_keeps_the_rules_has_no_problems() -> None:
    assert problems(GOOD) == []


def test_each_breach_is_named() -> None:
    bad = (GOOD.replace(b"<iati-identifier>XM-DAC-41114-", b"<iati-identifier>XX-")
           .replace(b'percentage="40"', b'percentage="30"')
           .replace(b'<period-end iso-date="2027-01-31"/>', b'<period-end iso-date="2027-02-01"/>')
           .replace(b'<activity-status code="2"/>', b'<activity-status code="1"/>')
           .replace(b'iso-date="2027-12-31" type="3"', b'iso-date="2025-12-31" type="3"')
           .replace(b'<transaction-date iso-date="2026-02-01"/>',
                    b'<transaction-date iso-date="2027-02-01"/>'))
    found = "\n".join(problems(bad))
    for words in ("does not start with the reporting org", "sum to 90", "longer than a year",
                  "overlap", "pipeline activity", "planned start after planned end",
                  "after the file was generated"):
        assert words in found, (words, found)


@given(st.dates(date(2019, 1, 1), date(2035, 1, 1)), st.integers(0, 2000),
       st.integers(1, 10**11))
def test_budget_periods_cover_the_span_each_at_most_a_year(start: date, days: int,
                                                           cents: int) -> None:
    from datetime import timedelta

    end = start + timedelta(days=days)
    spans = periods(start, end)
    assert spans[0][0] == start and spans[-1][1] == end
    for (s, e), nxt in zip(spans, [*spans[1:], None], strict=True):
        assert s <= e and (e - s).days < 366
        if nxt:
            assert nxt[0] == e + timedelta(days=1)
    total = D(cents) / 100
    parts = spread(total, spans)
    assert sum(parts) == total and all(p.as_tuple().exponent >= -2 for p in parts)


def test_text_xml_cannot_carry_is_stripped() -> None:
    assert clean("Migration\x00 data\x0b governance\ufffe\t\n") == "Migration data governance\t\n"
