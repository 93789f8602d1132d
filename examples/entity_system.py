"""A small, standalone entity system: what a UN entity's own programme system does to talk to
the Fund. It uses nothing of this project's code: a Kafka client (librdkafka, through
confluent-kafka) and the published AsyncAPI document (docs/asyncapi.json), from which it
takes the channel addresses, the message types and the example payloads it fills in.

It authenticates as its own principal (SASL/SCRAM-SHA-512, `entity-<CODE>`), which the broker
lets write only the entity's own inbound topics, and names itself in `ce_source`: a record
whose claimed source is not the topic's entity is dead-lettered as `forbidden`.

    python examples/entity_system.py --entity IOM --password ... note --reference IOM-PHL-9
    python examples/entity_system.py --entity IOM --password ... report --programme jp-...

Options: --bootstrap (KAFKA_BOOTSTRAP_SERVERS), --password (KAFKA_PASSWORD), --prefix (a
deployment's topic prefix), --asyncapi (the document), --tls-ca (SASL over TLS).
Prints one JSON line per record sent: topic, partition, offset, event id.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Producer

HERE = Path(__file__).resolve().parent
NOTE_TYPE = "org.migrationmptf.concept-note.submit.v1"
REPORT_TYPE = "org.migrationmptf.progress-report.submit.v1"


def channel_for(doc: dict[str, Any], message_type: str) -> tuple[str, dict[str, Any]]:
    """The channel address (with {entity}) that carries `message_type`, and its example."""
    messages = doc["components"]["messages"]
    mid = next(k for k, m in messages.items() if m["title"] == message_type)
    for ch in doc["channels"].values():
        if mid in ch["messages"]:
            return ch["address"], copy.deepcopy(messages[mid]["examples"][0]["payload"])
    raise LookupError(f"no channel carries {message_type}")


def producer(args: argparse.Namespace, errors: list[Any]) -> Producer:
    conf = {
        "error_cb": errors.append,  # a refused login is reported here, not as a delivery
        "bootstrap.servers": args.bootstrap,
        "security.protocol": "SASL_SSL" if args.tls_ca else "SASL_PLAINTEXT",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": f"entity-{args.entity}",
        "sasl.password": args.password,
        "enable.idempotence": True,  # implies acks=all: no loss, no duplicate on retry
        "client.id": f"{args.entity.lower()}-programme-system",
    }
    if args.tls_ca:
        conf["ssl.ca.location"] = args.tls_ca
    return Producer(conf)


def send(args: argparse.Namespace, message_type: str, key: str, data: dict[str, Any]) -> None:
    doc = json.loads(Path(args.asyncapi).read_text())
    address, _ = channel_for(doc, message_type)
    topic = args.prefix + address.replace("{entity}", args.entity)
    event_id = str(uuid.uuid4())
    headers = {"ce_id": event_id, "ce_source": f"urn:mptf:entity:{args.entity}",
               "ce_type": message_type, "ce_specversion": "1.0",
               "ce_time": datetime.now(UTC).isoformat(), "content-type": "application/json"}
    errors: list[Any] = []
    p = producer(args, errors)
    delivered: list[Any] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            raise SystemExit(f"not delivered: {err}")
        delivered.append(msg)

    p.produce(topic, json.dumps(data).encode(), key=key.encode(),
              headers=list(headers.items()), on_delivery=on_delivery)
    deadline = time.monotonic() + 30
    while not delivered and time.monotonic() < deadline:
        p.poll(0.1)
        refused = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
        if refused:
            raise SystemExit(f"refused by the broker: {refused[0].str()}")
    if not delivered:
        raise SystemExit("not delivered within 30 s")
    m = delivered[0]
    print(json.dumps({"topic": m.topic(), "partition": m.partition(), "offset": m.offset(),
                      "event_id": event_id, "type": message_type}))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS",
                                                          "127.0.0.1:19092"))
    ap.add_argument("--entity", required=True, help="Your UN entity code, e.g. IOM")
    ap.add_argument("--password", default=os.environ.get("KAFKA_PASSWORD", ""))
    ap.add_argument("--prefix", default=os.environ.get("MPTF_TOPIC_PREFIX", ""))
    ap.add_argument("--asyncapi", default=str(HERE.parent / "docs" / "asyncapi.json"))
    ap.add_argument("--tls-ca", default="")
    sub = ap.add_subparsers(dest="what", required=True)
    n = sub.add_parser("note", help="submit a concept note")
    n.add_argument("--reference", required=True)
    n.add_argument("--partner", default="ILO", help="the other PUNO")
    r = sub.add_parser("report", help="submit an annual narrative progress report")
    r.add_argument("--programme", required=True)
    r.add_argument("--year", type=int, default=2026)
    args = ap.parse_args(argv)
    if not args.password:
        ap.error("--password (or KAFKA_PASSWORD) is required: the broker refuses anonymous "
                 "clients")
    doc = json.loads(Path(args.asyncapi).read_text())
    if args.what == "note":
        _, note = channel_for(doc, NOTE_TYPE)
        note["entity_reference"] = args.reference
        budget = note["punos"][0]["budget_usd"]
        note["punos"] = [{"entity": args.entity, "convening": True, "budget_usd": budget},
                         {"entity": args.partner, "budget_usd": budget}]
        send(args, NOTE_TYPE, args.reference, note)
    else:
        _, report = channel_for(doc, REPORT_TYPE)
        report.update(programme_id=args.programme, year=args.year, kind="annual-narrative",
                      report_id=f"{args.entity}-{args.programme}-{args.year}")
        send(args, REPORT_TYPE, args.programme, report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
