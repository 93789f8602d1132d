"""The `file` span exporter (what the tests and the benchmark read): JSON lines, in batches,
each span once, none lost at shutdown; and the traceparent naming a span that is not current."""

from __future__ import annotations

import json
import time
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

from shared.telemetry import FILE_EXPORT_DELAY_MS, JsonLinesSpanExporter, file_processor


def _provider(path: Path) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": "mptf-test"}),
                              shutdown_on_exit=False)
    provider.add_span_processor(file_processor(str(path)))
    return provider


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_spans_are_written_as_json_lines_with_parent_and_attributes(tmp_path: Path) -> None:
    path = tmp_path / "svc.spans"
    provider = _provider(path)
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("consume x", kind=SpanKind.CONSUMER,
                                      attributes={"mptf.programme_id": "jp-1"}) as outer:
        with tracer.start_as_current_span("child"):
            pass
    provider.force_flush()
    spans = {s["name"]: s for s in _lines(path)}
    assert set(spans) == {"consume x", "child"}
    outer_id = format(outer.get_span_context().span_id, "016x")
    assert spans["child"]["parent_id"] == outer_id
    assert spans["child"]["trace_id"] == spans["consume x"]["trace_id"]
    assert spans["consume x"]["kind"] == "CONSUMER"
    assert spans["consume x"]["service"] == "mptf-test"
    assert spans["consume x"]["attributes"] == {"mptf.programme_id": "jp-1"}
    assert spans["consume x"]["start"] <= spans["consume x"]["end"]
    provider.shutdown()


def test_spans_reach_the_file_in_batches_without_a_flush(tmp_path: Path) -> None:
    path = tmp_path / "svc.spans"
    provider = _provider(path)
    tracer = provider.get_tracer("t")
    for i in range(300):
        with tracer.start_as_current_span(f"s{i}"):
            pass
    # no flush: the processor's own thread writes them within its delay
    deadline = time.monotonic() + 10 + FILE_EXPORT_DELAY_MS / 1000
    while len(_lines(path)) < 300 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(s["name"] for s in _lines(path)) == sorted(f"s{i}" for i in range(300))
    provider.shutdown()


def test_shutdown_writes_what_is_queued_and_appends_to_an_earlier_file(tmp_path: Path) -> None:
    path = tmp_path / "svc.spans"
    path.write_text(json.dumps({"name": "an earlier life's span"}) + "\n")
    provider = _provider(path)
    tracer = provider.get_tracer("t")
    for i in range(50):
        with tracer.start_as_current_span(f"s{i}"):
            pass
    provider.shutdown()  # what a stopping process does (atexit, or shutdown_tracing's flush)
    names = [s["name"] for s in _lines(path)]
    assert names[0] == "an earlier life's span"
    assert sorted(names[1:]) == sorted(f"s{i}" for i in range(50))


def test_the_exporter_keeps_one_file_open_and_closes_it_at_shutdown(tmp_path: Path) -> None:
    path = tmp_path / "svc.spans"
    exporter = JsonLinesSpanExporter(str(path))
    provider = _provider(tmp_path / "other.spans")
    tracer = provider.get_tracer("t")
    spans = []
    for i in range(3):
        with tracer.start_as_current_span(f"s{i}") as sp:
            pass
        spans.append(sp)
    exporter.export(spans[:2])
    handle = exporter._file
    exporter.export(spans[2:])
    assert exporter._file is handle and not handle.closed
    exporter.shutdown()
    assert handle.closed and exporter._file is None
    assert [s["name"] for s in _lines(path)] == ["s0", "s1", "s2"]
    provider.shutdown()


def test_traceparent_of_a_span_is_what_inject_writes_while_it_is_current(tmp_path: Path) -> None:
    """The relay names each publish span in the event's headers without making it current:
    the same traceparent the propagator writes for it (sampled and not), none for no span."""
    from opentelemetry import trace
    from opentelemetry.propagate import inject
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    from shared.telemetry import context_from, traceparent_of

    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    for provider in (_provider(tmp_path / "a.spans"),
                     TracerProvider(sampler=ALWAYS_OFF, shutdown_on_exit=False)):
        for ctx in (context_from(parent), None):
            sp = provider.get_tracer("t").start_span("publish x", context=ctx,
                                                     kind=SpanKind.PRODUCER)
            with trace.use_span(sp, end_on_exit=True):
                carrier: dict[str, str] = {}
                inject(carrier)
            assert traceparent_of(sp) == carrier["traceparent"]
            if ctx is not None:  # the event's trace goes on, under the publish span
                assert carrier["traceparent"].split("-")[1] == parent.split("-")[1]
    assert traceparent_of(trace.INVALID_SPAN) is None
