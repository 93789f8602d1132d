"""Each service's store starts with either MongoDB driver (`MPTF_MONGO_DRIVER`: motor, or
PyMongo's native async client): its indexes are made, and made again on a restart, with the
same code. (A call that differs between the two, such as `list_indexes`, which is a coroutine
in one and a cursor in the other, kept a service from starting with PyMongo's.)"""

from __future__ import annotations

import pytest

from services.funding.app import FundingSettings
from services.funding.store import FundingStore
from services.intake.app import IntakeSettings
from services.intake.store import IntakeStore
from services.monitoring.app import MonitoringSettings
from services.monitoring.store import MonitoringStore
from services.notifications.app import NotificationsSettings
from services.notifications.store import NotificationsStore
from tests.support import isolated

STORES = [(IntakeStore, IntakeSettings), (FundingStore, FundingSettings),
          (MonitoringStore, MonitoringSettings), (NotificationsStore, NotificationsSettings)]


@pytest.mark.parametrize("driver", ["motor", "pymongo"])
@pytest.mark.parametrize(("store_cls", "settings_cls"), STORES,
                         ids=[s.__name__ for s, _ in STORES])
async def test_each_store_makes_its_indexes_with_either_driver(store_cls, settings_cls,  # type: ignore[no-untyped-def]
                                                               driver: str) -> None:
    store = store_cls(isolated(settings_cls), driver=driver)
    try:
        await store.ensure_indexes()
        made = await store.db.outbox.index_information()
        await store.ensure_indexes()  # a restart: the same indexes, no error
        assert await store.db.outbox.index_information() == made
        assert len(made) > 1  # (the relay's own, beside _id)
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()


@pytest.mark.parametrize("driver", ["pymongo", "motor"])
async def test_each_store_command_is_a_client_span_with_its_collection(
        driver: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command a store sends is a CLIENT span named by command and collection, with
    the database's attributes, a child of the span current when it was sent (a consumed
    batch's, an HTTP request's); a failed one is marked an error."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from pymongo.errors import OperationFailure

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    store = IntakeStore(isolated(IntakeSettings), driver=driver)

    async def work(uow):  # type: ignore[no-untyped-def]
        await uow.docs("programmes").load(["jp-1"])
        await uow.docs("programmes").update("jp-1", {"$set": {"status": "draft"}},
                                            upsert=True)

    try:
        await store.ensure_indexes()
        exporter.clear()
        with provider.get_tracer("t").start_as_current_span("consume batch") as outer:
            await store.transaction(work)
        with pytest.raises(OperationFailure):
            await store.db.programmes.find_one({"$nosuchoperator": 1})
        spans = [s for s in exporter.get_finished_spans()
                 if s.kind == trace.SpanKind.CLIENT]
        assert {"find programmes", "commitTransaction"} <= {s.name for s in spans}
        found = next(s for s in spans if s.name == "find programmes")  # (the transaction's)
        assert found.attributes["db.system.name"] == "mongodb"
        assert found.attributes["db.namespace"] == store.db.name
        assert found.attributes["db.collection.name"] == "programmes"
        assert found.attributes["db.operation.name"] == "find"
        assert found.status.status_code == trace.StatusCode.UNSET
        in_txn = [found, *(s for s in spans if s.name == "commitTransaction")]
        outer_id = outer.get_span_context().span_id
        assert in_txn and all(s.parent is not None and s.parent.span_id == outer_id
                              and s.context.trace_id == outer.get_span_context().trace_id
                              for s in in_txn)
        failed = [s for s in spans if s.status.status_code == trace.StatusCode.ERROR]
        assert [s.name for s in failed] == ["find programmes"]
        assert failed[0].attributes["error.type"]
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()
