"""Tracing: one OpenTelemetry setup for every service.

The exporter is a setting (MPTF_OTEL_EXPORTER): `otlp` (OTLP/HTTP, used with the collector
and Jaeger in docker-compose), `zipkin` (the local Zipkin jar), `file` (JSON lines, one span
a line: what tests read), `console`, or `none`. W3C trace context travels in Kafka headers
(`traceparent`) and HTTP headers, so one trace follows a programme across services.

Which traces are recorded is a setting too (MPTF_OTEL_SAMPLE_RATIO, 1 by default): see
`sampler`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode

_TRACER_NAME = "mptf"
# how long a finished span waits, at most, before the file exporter writes it
FILE_EXPORT_DELAY_MS = 200
_configured = False


class JsonLinesSpanExporter(SpanExporter):
    """Appends each finished span as one JSON line (trace id, span id, parent, name, service,
    attributes, start/end in ns). The file stays open, and each export (a batch of spans)
    is one write."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file: Any = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for s in spans:
            ctx = s.get_span_context()
            lines.append(json.dumps({
                "trace_id": format(ctx.trace_id, "032x"),
                "span_id": format(ctx.span_id, "016x"),
                "parent_id": format(s.parent.span_id, "016x") if s.parent else None,
                "name": s.name,
                "kind": s.kind.name,
                "service": s.resource.attributes.get("service.name"),
                "attributes": {k: v if isinstance(v, str | int | float | bool) else list(v)
                               for k, v in (s.attributes or {}).items()},
                "links": [format(lk.context.trace_id, "032x") for lk in s.links],
                "status": s.status.status_code.name,
                "start": s.start_time,
                "end": s.end_time,
            }, default=str))
        if not lines:
            return SpanExportResult.SUCCESS
        with self._lock:
            if self._file is None:
                self._file = open(self.path, "a", encoding="utf-8")
            self._file.write("\n".join(lines) + "\n")
            self._file.flush()  # whole lines on disk for a reader, batch by batch
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def file_processor(path: str) -> BatchSpanProcessor:
    """The `file` exporter's span processor: JSON lines, written in batches."""
    return BatchSpanProcessor(JsonLinesSpanExporter(path),
                              schedule_delay_millis=FILE_EXPORT_DELAY_MS,
                              max_queue_size=65536, max_export_batch_size=2048)


def sampler(ratio: float, exporter: str) -> Sampler:
    """Head sampling, the same rule in every service: a span whose parent is known (in this
    process, or named by a traceparent from Kafka or HTTP) follows its parent's decision, and
    a trace begun here is kept for `ratio` of trace ids. So a programme's trace is whole or
    absent across the four services, and every service keeps the same programmes. A span not
    kept is not recorded nor exported, but it has its ids: the logs' trace ids and the
    traceparent an event carries (its sampled flag off) are there all the same.

    Where nothing is exported (`none`), no trace begins kept; one kept upstream stays kept
    downstream, its flag passed on."""
    return ParentBased(root=TraceIdRatioBased(0.0 if exporter == "none" else ratio))


def setup_tracing(service: str, exporter: str, endpoint: str = "", path: str = "",
                  sample_ratio: float = 1.0) -> None:
    global _configured
    if _configured:
        return
    _configured = True
    provider = TracerProvider(resource=Resource.create({"service.name": f"mptf-{service}",
                                                        "service.namespace": "mptf"}),
                              sampler=sampler(sample_ratio, exporter))
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()))
    elif exporter == "zipkin":
        from opentelemetry.exporter.zipkin.json import ZipkinExporter

        provider.add_span_processor(BatchSpanProcessor(
            ZipkinExporter(endpoint=endpoint or "http://127.0.0.1:9411/api/v2/spans")))
    elif exporter == "file":
        # in batches, off the event loop, as the network exporters are: written one span at
        # a time as each ended, the file cost the services 5-12% of their CPU in the
        # benchmark (every store command is a span). The spans are on disk within
        # FILE_EXPORT_DELAY_MS, and all of them once the process stops (shutdown_tracing)
        provider.add_span_processor(file_processor(path))
    elif exporter == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    # the store's commands are spanned by its own command listener (shared.store)


def shutdown_tracing() -> None:
    provider = trace.get_tracer_provider()
    if hasattr(provider, "force_flush"):
        provider.force_flush()


_tracer: tuple[Any, trace.Tracer] | None = None  # (its provider, the tracer)


def tracer() -> trace.Tracer:
    """The project's tracer, made once per tracer provider (getting it anew for every span
    cost 7% of a consumer's CPU)."""
    global _tracer
    provider = trace.get_tracer_provider()
    if _tracer is None or _tracer[0] is not provider:
        _tracer = (provider, trace.get_tracer(_TRACER_NAME, tracer_provider=provider))
    return _tracer[1]


def current_traceparent() -> str | None:
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent")


def traceparent_of(sp: trace.Span) -> str | None:
    """The W3C traceparent naming `sp`, as `inject` writes it while `sp` is current (without
    making it current: the relay's publish spans cost a context switch in and out each)."""
    ctx = sp.get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"


def trace_ids() -> tuple[str | None, str | None]:
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None, None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def context_from(traceparent: str | None, tracestate: str | None = None) -> otel_context.Context:
    carrier = {}
    if traceparent:
        carrier["traceparent"] = traceparent
    if tracestate:
        carrier["tracestate"] = tracestate
    return extract(carrier)


@contextmanager
def span(name: str, *, parent: str | None = None, kind: SpanKind = SpanKind.INTERNAL,
         attributes: dict[str, Any] | None = None) -> Iterator[trace.Span]:
    """A span, optionally continuing the trace named by a W3C traceparent."""
    ctx = context_from(parent) if parent else None
    attrs = {k: v for k, v in (attributes or {}).items() if v is not None}
    with tracer().start_as_current_span(name, context=ctx, kind=kind, attributes=attrs) as sp:
        try:
            yield sp
        except BaseException as e:
            sp.set_status(Status(StatusCode.ERROR, str(e)[:200]))
            raise


def tag_programme(programme_id: str | None) -> None:
    """Name the programme on the current span and in every log line that follows."""
    if not programme_id:
        return
    trace.get_current_span().set_attribute("mptf.programme_id", programme_id)
    import structlog

    structlog.contextvars.bind_contextvars(programme_id=programme_id)
