"""Order without one clock: a rebuild's merge keeps each key's facts in their log's order
(their commit order) and merges keys by time; shards of work are the same for a key on any
replica; the brokers' addresses reach the clients one by one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from shared.lease import unit_of
from shared.rebuild import merge
from shared.settings import ServiceSettings

T0 = datetime(2027, 1, 1, tzinfo=UTC)


def fact(key: str, seconds: float, name: str) -> SimpleNamespace:
    return SimpleNamespace(envelope=SimpleNamespace(subject=key, time=T0 + timedelta(
        seconds=seconds)), name=name)


def test_merge_keeps_each_keys_log_order_and_merges_keys_by_time() -> None:
    # one partition: a's facts published by one relay, b's by another, interleaved out of
    # time order; a's second fact was committed by a replica whose clock is behind
    partition = [fact("b", 5, "b1"), fact("a", 1, "a1"), fact("a", 0.5, "a2"),
                 fact("b", 6, "b2"), fact("a", 7, "a3")]
    other = [fact("c", 2, "c1"), fact("c", 5.5, "c2")]
    out = [f.name for f in merge([partition, other])]  # type: ignore[list-item]
    assert out == ["a1", "a2", "c1", "b1", "c2", "b2", "a3"]
    for key in "abc":  # every key in its log's order
        mine = [n for n in out if n.startswith(key)]
        assert mine == sorted(mine)


def test_a_key_falls_in_the_same_unit_everywhere() -> None:
    units = {unit_of(f"jp-{i}", 8) for i in range(200)}
    assert units == set(range(8))  # spread over every unit
    assert unit_of("jp-1", 8) == unit_of("jp-1", 8) and unit_of(None, 8) == unit_of("", 8)


def test_several_bootstrap_addresses_are_a_list() -> None:
    s = ServiceSettings(service_name="x", kafka_bootstrap_servers="a:1, b:2,c:3")
    assert s.bootstrap_servers == ["a:1", "b:2", "c:3"]
