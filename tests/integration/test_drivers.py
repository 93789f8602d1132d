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
