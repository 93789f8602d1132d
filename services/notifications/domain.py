"""Notifications' rules as plain code: who is told of which fact, in which words; the
identity that makes each notification happen once; webhook signatures; retry backoff; the
circuit breaker; which webhook addresses are acceptable."""

from __future__ import annotations

import base64
import hashlib
import html
import ipaddress
import random
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from shared.contracts import funding as F
from shared.contracts import intake as I
from shared.contracts import monitoring as M

FMU = "FMU"


def rco(country: str) -> str:
    """The Resident Coordinator's office of a country, as a directory code."""
    return f"RCO-{country.upper()}"


@dataclass(frozen=True)
class Notice:
    fact_id: str
    fact_type: str
    programme_id: str | None
    recipient: str  # a directory code: entity, RCO-<country>, FMU, or contributor
    channel: str  # inbox | webhook | email
    subject: str
    body: str
    action: str = ""
    # the fact's own data, which a webhook carries beside the words (not part of the id)
    data: dict[str, Any] | None = field(default=None, compare=False, hash=False)

    @property
    def id(self) -> str:
        """One notification per (fact, recipient, channel), however often the fact arrives."""
        raw = f"{self.fact_id}|{self.recipient}|{self.channel}"
        return "n-" + hashlib.sha256(raw.encode()).hexdigest()[:24]

    @property
    def group(self) -> str:
        """The document that holds a fact's inbox notices: one per fact, whatever the number
        of its recipients (the delivery log's rows are read out of it)."""
        return inbox_group(self.fact_id)

    def html(self) -> str:
        paras = "".join(f"<p>{html.escape(p)}</p>" for p in self.body.split("\n") if p)
        action = f"<p><strong>{html.escape(self.action)}</strong></p>" if self.action else ""
        return (f"<html><body><h2>{html.escape(self.subject)}</h2>{paras}{action}"
                "<p style='color:#666'>Migration MPTF notification</p></body></html>")

    def text(self) -> str:
        return f"{self.body}\n\n{self.action}".strip()


def inbox_group(fact_id: str) -> str:
    """The id of the document of a fact's inbox notices."""
    return "g-" + hashlib.sha256(f"{fact_id}|inbox".encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Programme:
    """What notifications remembers of a programme, to address facts about it."""

    programme_id: str
    title: str
    punos: tuple[str, ...]
    convening: str | None
    countries: tuple[str, ...]
    contributors: tuple[str, ...] = ()

    @staticmethod
    def from_doc(d: dict[str, Any]) -> Programme:
        return Programme(d["_id"], d.get("title", d["_id"]), tuple(d.get("punos", [])),
                         d.get("convening"), tuple(d.get("countries", [])),
                         tuple(d.get("contributors", [])))


def programme_view(fact: I.ProgrammeSubmitted) -> dict[str, Any]:
    note = fact.note
    return {"_id": fact.programme_id, "title": note.title,
            "countries": [c.upper() for c in note.countries],
            "punos": [p.entity.upper() for p in note.punos],
            "convening": next((p.entity.upper() for p in note.punos if p.convening), None)}


def _usd(x: Any) -> str:
    return f"USD {x:,.2f}"


@dataclass(frozen=True)
class Message:
    recipients: tuple[str, ...]
    subject: str
    body: str
    action: str = ""

    def addressed(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.recipients))


def _contributors(fact: Any, p: Programme | None) -> tuple[str, ...]:
    """The contributors whose money a fact concerns: those it names (funded_by), and those
    whose money funded the programme."""
    named = tuple(f.contributor for f in getattr(fact, "funded_by", []) or [])
    return tuple(dict.fromkeys((*named, *(p.contributors if p else ()))))


def message_for(fact: Any, p: Programme | None) -> Message | None:
    """Who is told of a fact, and in which words: what happened to which programme and
    what the recipient is expected to do. None: nobody is told."""
    t = p.title if p else getattr(fact, "programme_id", "")
    pid = getattr(fact, "programme_id", "")
    name = f"'{t}' ({pid})"
    punos = p.punos if p else ()
    rcos = tuple(rco(c) for c in (p.countries if p else ()))
    if isinstance(fact, I.ProgrammeSubmitted):
        return Message(punos, f"Concept note received: {t}",
                       f"The concept note {name}, submitted by {fact.submitted_by}, names you as "
                       "a participating organisation. It is being screened for eligibility.",
                       "No action is needed yet.")
    if isinstance(fact, I.ProgrammeScreened):
        if fact.eligible:
            return Message((*punos, *rcos, FMU), f"Eligible: {t}",
                           f"The concept note {name} passed eligibility screening and joins "
                           "the pipeline for the Steering Committee.",
                           "The FMU will table it at the next Steering Committee meeting.")
        reasons = "\n".join(f"- {r.code}: {r.message}" for r in fact.reasons)
        return Message(punos, f"Not eligible: {t}",
                       f"The concept note {name} did not pass screening:\n{reasons}",
                       "Address every reason above and submit a revised note under a new "
                       "reference.")
    if isinstance(fact, I.ProgrammeWithdrawn):
        return Message((*punos, *rcos, FMU), f"Withdrawn: {t}",
                       f"{fact.withdrawn_by} withdrew {name}: {fact.reason}",
                       "No action is needed.")
    if isinstance(fact, F.ProgrammeApproved):
        lines = "\n".join(f"- {a.entity}: {_usd(a.budget_usd)}" for a in fact.approved_budget)
        return Message((*punos, *rcos), f"Approved by the Steering Committee: {t}",
                       f"The Steering Committee approved {name} at priority {fact.priority} "
                       f"with this budget:\n{lines}",
                       "Prepare to start implementation; the allocation follows when funds "
                       "are available.")
    if isinstance(fact, F.ProgrammeRejected):
        return Message((*punos, *rcos), f"Not approved: {t}",
                       f"The Steering Committee did not approve {name}: {fact.rationale}",
                       "No action is needed; a new concept note may be submitted.")
    if isinstance(fact, F.ProgrammeDeferred):
        return Message((*punos, *rcos), f"Decision deferred: {t}",
                       f"The Steering Committee deferred its decision on {name}: "
                       f"{fact.rationale}", "Be ready to answer the Committee's questions.")
    if isinstance(fact, F.AllocationMade):
        lines = "\n".join(f"- {ln.entity}: {_usd(ln.total_usd)} ({_usd(ln.programme_budget_usd)}"
                          f" + {_usd(ln.support_cost_usd)} support cost)" for ln in fact.lines)
        donors = tuple(dict.fromkeys(f.contributor for f in fact.funded_by))
        return Message((*punos, *rcos, *donors), f"Funds allocated: {t}",
                       f"{name} was allocated {_usd(fact.total_usd)}:\n{lines}",
                       "PUNOs: expect the transfer from the Administrative Agent.")
    if isinstance(fact, F.FundsTransferred):
        return Message((fact.entity, *_contributors(fact, p)), f"Transfer received: {t}",
                       f"The Administrative Agent transferred {_usd(fact.amount_usd)} "
                       f"(tranche {fact.tranche}) for {name}.",
                       "Implementation can proceed; the reporting calendar has started.")
    if isinstance(fact, F.FundsRefunded):
        return Message((fact.entity, FMU, *_contributors(fact, p)), f"Refund received: {t}",
                       f"{fact.entity}'s refund of {_usd(fact.amount_usd)} for {name} was "
                       "booked.", "No action is needed.")
    if isinstance(fact, F.BudgetRevised):
        lines = "\n".join(f"- {ln.entity}: {_usd(ln.budget_usd)} ({ln.change_usd:+,.2f})"
                          for ln in fact.lines)
        return Message((*punos, *rcos, FMU, *_contributors(fact, p)), f"Budget revised: {t}",
                       f"The Steering Committee revised the budget of {name} (revision "
                       f"{fact.revision}) to {_usd(fact.total_budget_usd)}:\n{lines}",
                       "A top-up is transferred once it is allocated from deposited money.")
    if isinstance(fact, F.ProgrammeExtended):
        return Message((*punos, *rcos, FMU), f"No-cost extension: {t}",
                       f"{name} was extended by {fact.extension_months} month(s) at no cost; "
                       f"it now runs {fact.duration_months} months in all.",
                       "The reporting calendar has moved with the new end date.")
    if isinstance(fact, F.ProgrammeSuspended):
        return Message((*punos, *rcos, FMU, *_contributors(fact, p)), f"Suspended: {t}",
                       f"The Steering Committee suspended {name}: {fact.rationale}",
                       "No transfer is released until the programme resumes.")
    if isinstance(fact, F.ProgrammeResumed):
        return Message((*punos, *rcos, FMU, *_contributors(fact, p)), f"Resumed: {t}",
                       f"The Steering Committee resumed {name}."
                       + (f" {fact.rationale}" if fact.rationale else ""),
                       "Implementation and reporting continue.")
    if isinstance(fact, F.ProgrammeCancelled):
        return Message((*punos, *rcos, FMU, *_contributors(fact, p)), f"Cancelled: {t}",
                       f"The Steering Committee cancelled {name}: {fact.rationale}",
                       "PUNOs: refund what you were transferred and have not spent.")
    if isinstance(fact, F.AllocationReleased):
        lines = "\n".join(f"- {ln.entity}: {_usd(ln.released_usd)} released, "
                          f"{_usd(ln.owed_usd)} to refund" for ln in fact.lines)
        return Message((*punos, FMU, *_contributors(fact, p)), f"Allocation released: {t}",
                       f"{_usd(fact.released_usd)} allocated to {name} returned to the Fund "
                       f"({fact.reason}); {_usd(fact.owed_usd)} is owed back:\n{lines}",
                       "PUNOs: refund the amounts owed to the Administrative Agent."
                       if fact.owed_usd else "No action is needed.")
    if isinstance(fact, F.ContributionDeposited):
        return Message((fact.contributor, FMU), "Contribution received",
                       f"The deposit of {fact.amount:,.2f} {fact.currency} "
                       f"({_usd(fact.usd_amount)}) to contribution {fact.contribution_id} "
                       f"was received; after the AA's fee, {_usd(fact.net_usd)} is available "
                       "to the Fund.", "No action is needed. Thank you.")
    if isinstance(fact, M.ReportOverdue):
        what = f"{fact.kind.replace('-', ' ')} report" + (f" for {fact.year}" if fact.year
                                                           else "")
        return Message((*(fact.punos or punos), *rcos, FMU), f"Report overdue: {t}",
                       f"The {what} of {name} was due on {fact.due} and has not been received.",
                       "Submit the report now, or tell the FMU when it will come.")
    if isinstance(fact, M.ProgrammeAtRisk):
        lead = (p.convening,) if p and p.convening else punos
        return Message((*lead, FMU), f"At risk: {t}",
                       f"{name} was flagged: {', '.join(fact.new_flags)}.",
                       "Review the programme's delivery and reporting with the FMU.")
    if isinstance(fact, M.ProgrammeOperationallyClosed):
        return Message((*punos, *rcos, FMU), f"Operationally closed: {t}",
                       f"{name} ended on {fact.end_date} and its final narrative report is in.",
                       "Submit the certified final financial report by its deadline.")
    if isinstance(fact, M.ProgrammeFinanciallyClosed):
        return Message((*punos, FMU, *_contributors(fact, p)), f"Financially closed: {t}",
                       f"{name} is financially closed; unspent balances refunded: "
                       f"{_usd(fact.refund_total_usd)}.", "No action is needed.")
    return None


# -- channels ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Contact:
    code: str
    webhook_url: str | None = None
    webhook_secret: str | None = None
    email: str | None = None
    event_types: tuple[str, ...] = ("*",)
    mode: str = "immediate"  # or "digest"

    def wants(self, fact_type: str) -> bool:
        return "*" in self.event_types or fact_type in self.event_types


def channels(contact: Contact | None, fact_type: str) -> list[str]:
    """Every known recipient has an inbox; webhook and e-mail where the directory has them
    and the recipient wants this kind of fact."""
    out = ["inbox"]
    if contact and contact.wants(fact_type):
        if contact.webhook_url:
            out.append("webhook")
        if contact.email:
            out.append("email")
    return out


# -- webhooks -------------------------------------------------------------------------------
# Signed as the Standard Webhooks scheme says (standardwebhooks.com), so a receiver can use an
# off-the-shelf verifier: `webhook-id` (the delivery's id, to dedupe on), `webhook-timestamp`
# (unix seconds) and `webhook-signature: v1,<base64 HMAC-SHA256 over "<id>.<timestamp>.<body>">`,
# with the recipient's secret `whsec_<base64 of at least 32 random bytes>`.
SECRET_PREFIX = "whsec_"  # noqa: S105 - the scheme's prefix, not a secret
MIN_SECRET_BYTES = 32
# what check_webhook_secret accepts, as a JSON Schema pattern for the documents: whsec_, then
# padded base64 of at least 32 bytes (ten groups of four make 30; then at least 2 more bytes)
_B64 = "[A-Za-z0-9+/]"
SECRET_PATTERN = (f"^{SECRET_PREFIX}(?:{_B64}{{4}}){{10}}"
                  f"(?:{_B64}{{3}}=|(?:{_B64}{{4}})+(?:{_B64}{{2}}==|{_B64}{{3}}=)?)$")
REPLAY_WINDOW_SECONDS = 300  # the standard's tolerance, which its verifiers apply


def new_webhook_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(MIN_SECRET_BYTES)).decode()


def check_webhook_secret(secret: str) -> str:
    """A secret a recipient chose: whsec_ and base64 of at least 32 bytes."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret is {SECRET_PREFIX}<base64 of >= 32 random bytes>")
    try:
        raw = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except ValueError as e:
        raise ValueError("a webhook secret's key part must be base64") from e
    if len(raw) < MIN_SECRET_BYTES:
        raise ValueError(f"a webhook secret needs at least {MIN_SECRET_BYTES} random bytes")
    return secret


def _webhook(secret: str) -> Any:
    from standardwebhooks import Webhook

    # secrets kept before the scheme (not whsec_) are used as their bytes
    return Webhook(secret if secret.startswith(SECRET_PREFIX) else secret.encode())


def sign(secret: str, delivery_id: str, body: bytes, ts: int | None = None) -> dict[str, str]:
    """The Standard Webhooks headers of one delivery."""
    ts = int(time.time()) if ts is None else ts
    when = datetime.fromtimestamp(ts, tz=UTC)
    return {"webhook-id": delivery_id, "webhook-timestamp": str(ts),
            "webhook-signature": _webhook(secret).sign(delivery_id, when, body.decode())}


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Whether the headers sign this body and id, within the replay window (as any Standard
    Webhooks verifier checks)."""
    from standardwebhooks import WebhookVerificationError

    try:
        _webhook(secret).verify(body, headers, json_parse=False)
    except (WebhookVerificationError, ValueError):  # ValueError: a malformed signature
        return False
    return True


def check_webhook_url(url: str, *, allow_private: bool) -> str:
    """An acceptable webhook address: http(s), a host, and (outside tests) never loopback,
    private, link-local or reserved addresses. Names are checked again when sending."""
    u = urlsplit(url)
    if u.scheme not in ("https", "http") or not u.hostname:
        raise ValueError("a webhook URL is http(s)://host/...")
    if not allow_private:
        if u.scheme != "https":
            raise ValueError("webhooks must use https")
        check_address(u.hostname)
    return url


def check_address(host: str) -> None:
    host = host.lower().rstrip(".")  # "localhost." is localhost
    if host.lower() in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        raise ValueError(f"{host} is a loopback name")
    ip = literal_address(host)
    if ip is None:
        return  # a name: resolved and checked at registration and again at send time
    if not ip.is_global:
        raise ValueError(f"{host} is not a public address")


def literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host literally is, in every form a resolver takes: dotted, short
    (127.1), decimal (2130706433), hex (0x7f000001), octal, IPv6; None for a name."""
    import socket

    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    if re.fullmatch(r"(?:0x[0-9a-f]+|[0-9]+)(?:\.(?:0x[0-9a-f]+|[0-9]+)){0,3}", host, re.I):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            raise ValueError(f"{host} is not a valid address") from None
    return None


# -- retries and the circuit breaker --------------------------------------------------------
def backoff(attempt: int, base: float, cap: float, rnd: random.Random | None = None) -> float:
    """Seconds before attempt `attempt + 1`: exponential with full jitter (at least half)."""
    r = rnd or random
    d = min(cap, base * 2 ** max(0, attempt - 1))
    return d / 2 + r.random() * d / 2


@dataclass
class CircuitBreaker:
    """Per endpoint: after `threshold` consecutive failures it opens for `cooldown`
    seconds; then one probe is let through (half-open)."""

    threshold: int = 5
    cooldown: float = 30.0
    failures: dict[str, int] = field(default_factory=dict)
    open_until: dict[str, float] = field(default_factory=dict)

    def allow(self, endpoint: str, now: float) -> bool:
        until = self.open_until.get(endpoint)
        if until is None:
            return True
        if now >= until:
            self.open_until[endpoint] = now + self.cooldown  # one probe, then wait again
            return True
        return False

    def success(self, endpoint: str) -> None:
        self.failures.pop(endpoint, None)
        self.open_until.pop(endpoint, None)

    def failure(self, endpoint: str, now: float) -> None:
        n = self.failures.get(endpoint, 0) + 1
        self.failures[endpoint] = n
        if n >= self.threshold:
            self.open_until[endpoint] = now + self.cooldown

    def reopens_at(self, endpoint: str) -> float | None:
        return self.open_until.get(endpoint)


def next_digest(now: datetime, hour: int) -> datetime:
    slot = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    return slot if slot > now else slot + timedelta(days=1)
