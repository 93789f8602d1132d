"""Whether a service's consumer groups are handed over, asked from a child process.

librdkafka 2.16's admin client can abort the process that polls consumer groups while a
Kafka node restarts (an assertion in rd_kafka_enq_once_del_source_return, seen twice in
the fault run). Asked from a child, an abort costs that look only: the fault run looks
again from a new child."""

from __future__ import annotations

import os
from typing import Any

_admin: Any = None  # one client per child, kept between looks


def handed_over(prefix: str, live: int) -> bool:
    """Every consumer group named `prefix...` is stable with `live` members. A failed look
    is raised as a RuntimeError naming librdkafka's error (its own exception cannot be
    pickled back to the parent process)."""
    try:
        return _handed_over(prefix, live)
    except Exception as e:
        raise RuntimeError(repr(e)[:300]) from None


def _handed_over(prefix: str, live: int) -> bool:
    global _admin
    if _admin is None:
        from mptf_cli.provision import admin_client
        from tests.support import credentials

        _admin = admin_client(os.environ["KAFKA_BOOTSTRAP_SERVERS"], "admin",
                              credentials()["admin"])
    listed = _admin.list_consumer_groups(request_timeout=5).result()
    ids = [g.group_id for g in listed.valid if g.group_id.startswith(prefix)]
    if not ids:  # (none listed, as while a coordinator moves: not handed over yet)
        return False
    described = [f.result() for f in _admin.describe_consumer_groups(
        ids, request_timeout=5).values()]
    return all(g.state.name == "STABLE" and len(g.members) == live for g in described)
