from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.infra


@pytest.fixture(autouse=True)
def _infra(infra: dict[str, str]) -> dict[str, str]:
    return infra


@asynccontextmanager
async def running(build: Any, settings: Any) -> AsyncIterator[tuple[Any, Any, httpx.AsyncClient]]:
    """A service in this process, against the real broker and store, with an HTTP client."""
    app, runtime = build(settings)
    await runtime.start()
    await asyncio.wait_for(runtime.ready.wait(), 60)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://svc") as http:
            yield app, runtime, http
    finally:
        await runtime.stop()
