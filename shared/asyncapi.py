"""The AsyncAPI 3.0 document, generated from the contract registry.

FastStream can derive AsyncAPI from subscriber signatures, but our consumers take raw batches
(they decode and dead-letter themselves) and our contract also lives in Kafka headers
(CloudEvents binary mode), so the document is rendered from shared.contracts instead: every
channel (topic), every message with its payload schema, its CloudEvents headers and an
example, and which service sends or receives it.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from shared import topics as T
from shared.contracts import REGISTRY

HEADERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["ce_id", "ce_source", "ce_type", "ce_specversion", "content-type"],
    "properties": {
        "ce_id": {"type": "string", "description": "Event id (UUID); consumers dedupe on it"},
        "ce_source": {"type": "string",
                      "description": "/mptf/<service>, or urn:mptf:entity:<CODE> inbound"},
        "ce_type": {"type": "string", "description": "Event type, version included"},
        "ce_specversion": {"const": "1.0"},
        "ce_time": {"type": "string", "format": "date-time"},
        "ce_subject": {"type": "string", "description": "Programme or contribution id (= key)"},
        "content-type": {"const": "application/json"},
        "traceparent": {"type": "string", "description": "W3C trace context"},
    },
}

CHANNEL_DOCS = {
    T.INBOUND_CONCEPT_NOTES: "An entity system submits concept notes on its own topic (read by "
                             "intake). Only that entity's principal may write it, and "
                             "ce_source must be urn:mptf:entity:<that entity>.",
    T.INBOUND_PROGRESS_REPORTS: "An entity system submits progress reports on its own topic "
                                "(read by monitoring); the same binding of sender and topic.",
    T.INBOUND_REFUNDS: "An entity system reports the refunds it made to the Fund on its own "
                       "topic (read by funding, which books each as received); the same "
                       "binding of sender and topic.",
    T.PROGRAMMES: "Programme facts; written by intake only.",
    T.FUNDING: "Money and decision facts; written by funding only; read by the services and "
               "operators (it names every donor's contributions).",
    T.FUNDERS: "What every funder may see: allocations, transfers and refunds with the "
               "contributions that funded them; written by funding only, read by funders.",
    T.MONITORING: "Implementation facts; written by monitoring only.",
    T.NOTIFICATIONS: "Delivery facts; written by notifications only.",
}

# Every client authenticates with SASL/SCRAM-SHA-512 as its own principal; the broker's ACLs
# (shared.kafka_acl) allow each exactly its part.
SECURITY_SCHEMES: dict[str, Any] = {
    "service": {"type": "scramSha512",
                "description": "A service's own principal svc-<service>: it reads what it "
                               "subscribes to, writes the facts it owns and its dead letters."},
    "entity": {"type": "scramSha512",
               "description": "An entity system's principal entity-<CODE>: it writes only "
                              "its own inbound topics (mptf.inbound.<kind>.<CODE>)."},
    "funder": {"type": "scramSha512",
               "description": "A contributor's principal funder-<CODE>: it reads only "
                              "mptf.funders, with consumer groups named funder-<CODE>.*."},
    "operator": {"type": "scramSha512",
                 "description": "The operators' tools: read every topic and write inbound "
                                "topics (dead-letter replay)."},
}


def _sec(*names: str) -> list[dict[str, str]]:
    return [{"$ref": f"#/components/securitySchemes/{n}"} for n in names]


def _address(topic: str) -> str:
    return f"{topic}.{{entity}}" if topic in T.INBOUND else topic


def _msg_id(type_: str) -> str:
    return type_.removeprefix("org.migrationmptf.").replace(".", "_").replace("-", "_")


def document(service: str | None = None, *, receives: dict[str, list[str]] | None = None
             ) -> dict[str, Any]:
    """The AsyncAPI document: all contracts, or one service's view (what it sends, and the
    types it receives per topic)."""
    contracts = list(REGISTRY.values())
    _, defs = models_json_schema([(c.model, "validation") for c in contracts],
                                 ref_template="#/components/schemas/{model}")
    schemas = defs.get("$defs", {})
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for c in contracts:
        mid = _msg_id(c.type)
        messages[mid] = {
            "name": c.name,
            "title": c.type,
            "summary": c.summary,
            "description": (c.model.__doc__ or "").strip(),
            "contentType": "application/json",
            "headers": HEADERS_SCHEMA,
            "payload": {"$ref": f"#/components/schemas/{c.name}"},
            "correlationId": {"location": "$message.header#/ce_id"},
            "bindings": {"kafka": {"key": {"type": "string", "description": f"data.{c.key}"}}},
            "examples": [{"name": "example", "headers": {
                "ce_type": c.type, "ce_specversion": "1.0", "content-type": "application/json",
                "ce_source": ("urn:mptf:entity:IOM" if c.inbound else f"/mptf/{c.owner}")},
                "payload": c.example}],
            "x-owner": c.owner,
        }
        for topic in c.topics:
            ch = channels.setdefault(topic.replace(".", "_"), {
                "address": _address(topic), "description": CHANNEL_DOCS.get(topic, ""),
                "messages": {}, "bindings": {"kafka": {
                    "partitions": 3 if topic in T.INBOUND else 6}}, "x-topic": topic})
            if topic in T.INBOUND:
                ch["parameters"] = {"entity": {
                    "description": "The sending entity's code (IOM, ILO, UN-WOMEN, ...): "
                                   "the topic is its own."}}
            ch["messages"][mid] = {"$ref": f"#/components/messages/{mid}"}
    for key, ch in channels.items():
        topic = ch.pop("x-topic")
        owner = next(c.owner for c in contracts if topic in c.topics)
        inbound = topic in T.INBOUND
        refs = [{"$ref": f"#/channels/{key}/messages/{m}"} for m in ch["messages"]]
        if service is None or (service == owner and not inbound):
            operations[f"send_{key}"] = {
                "action": "send", "channel": {"$ref": f"#/channels/{key}"},
                "summary": ("an entity system publishes on its own topic" if inbound
                            else f"{owner} publishes (sole writer)"),
                "security": _sec("entity" if inbound else "service"), "messages": refs}
        if service is not None and receives and topic in receives:
            operations[f"receive_{key}"] = {
                "action": "receive", "channel": {"$ref": f"#/channels/{key}"},
                "summary": f"{service} consumes", "security": _sec("service"),
                # what it acts on of what travels there (a tolerant subscriber accepts a
                # list of types, some of which another topic carries)
                "messages": [{"$ref": f"#/channels/{key}/messages/{_msg_id(t)}"}
                             for t in receives[topic] if _msg_id(t) in ch["messages"]]}
        elif service is None and (inbound or topic == T.FUNDERS):
            operations[f"receive_{key}"] = {
                "action": "receive", "channel": {"$ref": f"#/channels/{key}"},
                "summary": "funders consume" if topic == T.FUNDERS else f"{owner} consumes",
                "security": _sec("funder" if topic == T.FUNDERS else "service"),
                "messages": refs}
        if topic in T.CONSUMED:
            ch["x-dead-letter-topic"] = T.dlq(topic)
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Migration MPTF events" + (f" ({service})" if service else ""),
                 "version": "1.0.1",  # 1.0.1: what inputs refuse in text is stated (SAFE_TEXT)
                 "description": "CloudEvents over Kafka (binary mode). Key = programme id "
                                "(contribution id for money not yet a programme's). Records "
                                "that cannot be processed go to <topic>.dlq with headers "
                                "dlq_reason, dlq_detail, dlq_handler, dlq_topic, "
                                "dlq_partition, dlq_offset."},
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:19092", "protocol": "kafka",
                              "description": "SASL/SCRAM-SHA-512 over plaintext (loopback)",
                              "security": _sec(*SECURITY_SCHEMES)},
                    "production": {"host": "kafka-bootstrap:9093", "protocol": "kafka-secure",
                                   "description": "SASL/SCRAM-SHA-512 over TLS",
                                   "security": _sec(*SECURITY_SCHEMES)}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas,
                       "securitySchemes": SECURITY_SCHEMES},
    }


if __name__ == "__main__":
    import json
    import sys

    json.dump(document(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
