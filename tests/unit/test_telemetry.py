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


def _kept_ids(path: Path) -> set[str]:
    return {s["trace_id"] for s in _lines(path)}


def _sampled_provider(path: Path, ratio: float, exporter: str = "file") -> TracerProvider:
    from shared.telemetry import sampler

    provider = TracerProvider(sampler=sampler(ratio, exporter), shutdown_on_exit=False)
    provider.add_span_processor(file_processor(str(path)))
    return provider


def test_a_trace_begun_here_is_kept_for_the_ratio_of_trace_ids(tmp_path: Path) -> None:
    """Roots (a submission, a meeting) are kept by their trace id: none at 0, all at 1, and
    at 0.25 those whose id falls in the lowest quarter (the same rule in every service)."""
    for ratio in (0.0, 0.25, 1.0):
        path = tmp_path / f"{ratio}.spans"
        provider = _sampled_provider(path, ratio)
        roots = []
        for i in range(400):
            with provider.get_tracer("t").start_as_current_span(f"POST {i}") as sp:
                roots.append(sp.get_span_context())
        provider.force_flush()
        bound = round(ratio * 2**64)
        expected = {format(c.trace_id, "032x") for c in roots
                    if c.trace_id & (2**64 - 1) < bound}
        assert _kept_ids(path) == expected
        assert all(c.trace_flags.sampled == (format(c.trace_id, "032x") in expected)
                   for c in roots)
        if ratio == 0.25:  # about a quarter (400 ids: 100 +- 8.7)
            assert 50 < len(expected) < 150
        provider.shutdown()


def test_a_span_follows_its_parent_whatever_the_ratio(tmp_path: Path) -> None:
    """Whole traces or none: a record's consumer span is kept when its producer's was (even
    at ratio 0, or where nothing is exported) and dropped when it was not (even at ratio 1),
    and so is everything under it in this process."""
    from shared.telemetry import context_from

    kept = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    dropped = "00-5bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b8-00"
    for ratio, exporter in ((0.0, "file"), (1.0, "file"), (0.5, "file"), (1.0, "none")):
        path = tmp_path / f"{ratio}-{exporter}.spans"
        provider = _sampled_provider(path, ratio, exporter)
        tracer = provider.get_tracer("t")
        for parent in (kept, dropped):
            with tracer.start_as_current_span("consume x", context=context_from(parent)):
                with tracer.start_as_current_span("find programmes"):
                    pass
        provider.force_flush()
        assert [(s["name"], s["trace_id"]) for s in _lines(path)] == [
            ("find programmes", kept.split("-")[1]), ("consume x", kept.split("-")[1])]
        provider.shutdown()


def test_nothing_exported_begins_no_kept_trace(tmp_path: Path) -> None:
    path = tmp_path / "none.spans"
    provider = _sampled_provider(path, 1.0, "none")
    with provider.get_tracer("t").start_as_current_span("POST /v1/concept-notes") as sp:
        pass
    provider.force_flush()
    assert not sp.is_recording() and not sp.get_span_context().trace_flags.sampled
    assert _lines(path) == []
    provider.shutdown()


def test_a_trace_not_kept_still_names_itself_in_logs_and_events(tmp_path: Path) -> None:
    """A span not kept records nothing, but its trace id goes to the log lines made under it
    and, with the sampled flag off, to the traceparent of what it emits: downstream services
    continue the same trace id and keep dropping it."""
    from opentelemetry import trace

    from shared.telemetry import context_from, current_traceparent, trace_ids

    path = tmp_path / "dropped.spans"
    provider = _sampled_provider(path, 0.0)
    with provider.get_tracer("t").start_as_current_span("POST /v1/concept-notes") as sp:
        assert not sp.is_recording()
        ctx = sp.get_span_context()
        assert trace_ids() == (format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"))
        emitted = current_traceparent()
    assert emitted is not None
    _, trace_id, span_id, flags = emitted.split("-")
    assert (trace_id, span_id) == (f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}")
    assert not int(flags, 16) & 1  # the sampled flag off
    downstream = _sampled_provider(tmp_path / "downstream.spans", 1.0)
    with downstream.get_tracer("t").start_as_current_span(
            "consume x", context=context_from(emitted)) as child:
        assert not child.is_recording()
        assert child.get_span_context().trace_id == ctx.trace_id
        assert trace.get_current_span() is child
    for p in (provider, downstream):
        p.force_flush()
        p.shutdown()
    assert _lines(path) == [] and _lines(tmp_path / "downstream.spans") == []
