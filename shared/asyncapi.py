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
    T.INBOUND_CONCEPT_NOTES: "Entity systems submit concept notes (read by intake).",
    T.INBOUND_PROGRESS_REPORTS: "Entity systems submit progress reports (read by monitoring).",
    T.PROGRAMMES: "Programme facts; written by intake only.",
    T.FUNDING: "Money and decision facts; written by funding only. Funders subscribe here.",
    T.MONITORING: "Implementation facts; written by monitoring only.",
    T.NOTIFICATIONS: "Delivery facts; written by notifications only.",
}


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
        ch = channels.setdefault(c.topic.replace(".", "_"), {
            "address": c.topic, "description": CHANNEL_DOCS.get(c.topic, ""), "messages": {},
            "bindings": {"kafka": {"partitions": 6}}})
        ch["messages"][mid] = {"$ref": f"#/components/messages/{mid}"}
    for key, ch in channels.items():
        topic = ch["address"]
        owner = next(c.owner for c in contracts if c.topic == topic)
        inbound = any(c.inbound for c in contracts if c.topic == topic)
        if service is None or (service == owner and not inbound):
            if not inbound:
                operations[f"send_{key}"] = {
                    "action": "send", "channel": {"$ref": f"#/channels/{key}"},
                    "summary": f"{owner} publishes (sole writer)",
                    "messages": [{"$ref": f"#/channels/{key}/messages/{m}"}
                                 for m in ch["messages"]]}
        if service is not None and receives and topic in receives:
            operations[f"receive_{key}"] = {
                "action": "receive", "channel": {"$ref": f"#/channels/{key}"},
                "summary": f"{service} consumes",
                "messages": [{"$ref": f"#/channels/{key}/messages/{_msg_id(t)}"}
                             for t in receives[topic]]}
        elif service is None and inbound:
            operations[f"receive_{key}"] = {
                "action": "receive", "channel": {"$ref": f"#/channels/{key}"},
                "summary": f"{owner} consumes", "messages": [
                    {"$ref": f"#/channels/{key}/messages/{m}"} for m in ch["messages"]]}
        ch.setdefault("x-dead-letter-topic", T.dlq(topic))
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Migration MPTF events" + (f" ({service})" if service else ""),
                 "version": "1.0.0",
                 "description": "CloudEvents over Kafka (binary mode). Key = programme id "
                                "(contribution id for money not yet a programme's). Records "
                                "that cannot be processed go to <topic>.dlq with headers "
                                "dlq_reason, dlq_detail, dlq_handler, dlq_topic, "
                                "dlq_partition, dlq_offset."},
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:19092", "protocol": "kafka"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


if __name__ == "__main__":
    import json
    import sys

    json.dump(document(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
