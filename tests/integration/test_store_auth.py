"""The store's edge: a service reaches its Mongo server as its own user, who may read and write
the service's database and nothing else; an anonymous client, a wrong password or another
service's user gets nothing. Against the suite's real server (SecantusDB with users, or the
mongod MONGODB_URL names: that server must require authentication too)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from pymongo import DeleteMany, InsertOne, UpdateOne
from pymongo.errors import OperationFailure, PyMongoError

from services.funding.store import FundingStore
from services.intake.store import IntakeStore
from shared.settings import ServiceSettings
from shared.store import Store
from tests.support import isolated, service_user, unique


def without_user(url: str) -> str:
    """The server's URL with no user in it (the harness's names the administrator)."""
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.split('@', 1)[-1]}"


async def refused(call: Any, code: int) -> None:
    with pytest.raises(OperationFailure) as e:
        await call
    assert e.value.code == code, e.value


async def test_a_service_reads_and_writes_its_own_database_alone() -> None:
    tag = unique("auth")
    url = without_user(os.environ["MONGODB_URL"])
    user = service_user(os.environ["MONGODB_URL"], f"{tag}_intake")
    # funding's database, made by the administrator (the harness)
    funding = FundingStore(isolated(ServiceSettings, tag=tag, service_name="funding"))
    await funding.ensure_indexes()
    await funding.client.close()
    # the user and password as a deployment gives them: the environment
    settings = isolated(ServiceSettings, tag=tag, service_name="intake", mongodb_url=url,
                        mongodb_username=user["MONGODB_USERNAME"],
                        mongodb_password=user["MONGODB_PASSWORD"])
    store = IntakeStore(settings)
    try:
        await store.ensure_indexes()
        await store.db.probe.insert_one({"_id": "mine"})
        assert await store.db.probe.find_one({"_id": "mine"}) == {"_id": "mine"}
        theirs = store.client[f"{tag}_funding"]
        await refused(theirs.probe.find_one({}), 13)
        await refused(theirs.probe.insert_one({"_id": "not-mine"}), 13)
        await refused(theirs.drop_collection("outbox"), 13)
        await refused(store.client.list_database_names(), 13)
        # one client-level bulkWrite (sent to `admin`, as the store's transactions close)
        # may write its own database, never another's, not even beside its own
        mine, not_mine = f"{tag}_intake.probe", f"{tag}_funding.probe"
        await store.client.bulk_write([InsertOne({"_id": "bulk"}, namespace=mine)])
        assert await store.db.probe.find_one({"_id": "bulk"}) == {"_id": "bulk"}
        for models in ([InsertOne({"_id": "x"}, namespace=not_mine)],
                       [InsertOne({"_id": "y"}, namespace=mine),
                        UpdateOne({"_id": "z"}, {"$set": {"n": 1}}, upsert=True,
                                  namespace=not_mine)],
                       [DeleteMany({}, namespace=not_mine)]):
            with pytest.raises(PyMongoError) as e:
                await store.client.bulk_write(models)
            assert "not authorized" in str(e.value) or getattr(e.value, "code", 0) == 13
        assert await store.db.probe.find_one({"_id": "y"}) is None  # nothing of it written
    finally:
        await store.client.close()
    check = FundingStore(isolated(ServiceSettings, tag=tag, service_name="funding"))
    try:  # (as the administrator) funding's database holds nothing intake's user sent
        assert await check.db.probe.count_documents({}) == 0
    finally:
        await check.client.close()


async def test_the_password_comes_from_the_credentials_file_by_the_services_own_name(
        tmp_path: Path) -> None:
    tag = unique("auth")
    url = without_user(os.environ["MONGODB_URL"])
    user = service_user(os.environ["MONGODB_URL"], f"{tag}_notifications")
    creds = tmp_path / "mongo-credentials.json"
    creds.write_text(json.dumps({user["MONGODB_USERNAME"]: user["MONGODB_PASSWORD"],
                                 "svc-intake": "someone-elses"}))
    settings = isolated(ServiceSettings, tag=tag, service_name="notifications",
                        mongodb_url=url, mongodb_username=user["MONGODB_USERNAME"],
                        mongodb_credentials=str(creds))
    store = Store(settings)
    try:
        await store.db.probe.insert_one({"_id": "from-the-file"})
        assert await store.db.probe.count_documents({}) == 1
    finally:
        await store.client.close()


async def test_no_anonymous_client_gets_anything() -> None:
    tag = unique("auth")
    store = IntakeStore(isolated(ServiceSettings, tag=tag, service_name="intake",
                                 mongodb_url=without_user(os.environ["MONGODB_URL"])))
    try:
        await refused(store.ensure_indexes(), 13)
        await refused(store.db.probe.insert_one({"_id": "x"}), 13)
        await refused(store.db.probe.find_one({}), 13)
        await refused(store.client.list_database_names(), 13)
    finally:
        await store.client.close()


async def test_a_wrong_password_gets_nothing() -> None:
    tag = unique("auth")
    user = service_user(os.environ["MONGODB_URL"], f"{tag}_intake")
    store = IntakeStore(isolated(
        ServiceSettings, tag=tag, service_name="intake",
        mongodb_url=without_user(os.environ["MONGODB_URL"]),
        mongodb_username=user["MONGODB_USERNAME"],
        mongodb_password="not-" + user["MONGODB_PASSWORD"]))
    try:
        # the handshake fails, so no command is sent: the driver gives up on the server
        with pytest.raises(PyMongoError) as e:
            await store.db.probe.find_one({})
        assert "AuthenticationFailed" in str(e.value) or getattr(e.value, "code", 0) == 18
    finally:
        await store.client.close()
