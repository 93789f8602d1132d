"""Notifications' use cases."""

from __future__ import annotations

from services.notifications.domain import notices_for, programme_view
from services.notifications.store import NotificationsStore
from shared.consumer import Incoming
from shared.contracts.intake import ProgrammeSubmitted
from shared.store import UnitOfWork

FACTS_CONSUMER = "notifications.programmes"


async def handle_facts(store: NotificationsStore, batch: list[Incoming]) -> None:
    """One transaction per batch: redelivered facts are skipped (inbox), each notice is
    recorded once (its id is derived from fact, recipient and channel)."""

    async def work(uow: UnitOfWork) -> None:
        fresh = await uow.claim(FACTS_CONSUMER, [i.id for i in batch])
        for inc in batch:
            if inc.id not in fresh:
                continue
            fresh.discard(inc.id)  # the same event twice in one batch acts once
            if isinstance(inc.event, ProgrammeSubmitted):
                await store.remember_programme(uow, programme_view(inc.event))
            await store.deliver_inbox(uow, notices_for(inc.id, inc.event), inc.traceparent)

    await store.transaction(work)
