"""Prometheus metrics, defined once for every service (each process exposes /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HANDLER_SECONDS = Histogram(
    "mptf_handler_seconds", "Time to handle one consumed batch", ["topic", "handler"])
EVENTS_CONSUMED = Counter(
    "mptf_events_consumed_total", "Events consumed", ["topic", "type", "outcome"])
DEAD_LETTERS = Counter(
    "mptf_dead_letters_total", "Records sent to a dead-letter topic", ["topic", "reason"])
CONSUMER_LAG = Gauge(
    "mptf_consumer_lag", "Records behind the partition's end", ["topic", "partition"])
OUTBOX_BACKLOG = Gauge("mptf_outbox_backlog", "Outbox events not yet published")
OUTBOX_OLDEST_AGE = Gauge("mptf_outbox_oldest_age_seconds", "Age of the oldest unpublished event")
OUTBOX_PUBLISHED = Counter("mptf_outbox_published_total", "Outbox events published", ["topic"])
HTTP_REQUESTS = Counter(
    "mptf_http_requests_total", "HTTP requests", ["method", "route", "status"])
HTTP_SECONDS = Histogram("mptf_http_request_seconds", "HTTP latency", ["method", "route"])
BUSINESS = Counter("mptf_business_events_total", "Business facts by kind", ["kind"])
USD = Counter("mptf_usd_total", "US dollars moved, by kind: deposited, allocated, "
              "transferred, refunded", ["kind"])
STORE_COMMANDS = Counter("mptf_store_commands_total",
                         "Commands sent to the store (each a round trip), by command and "
                         "collection", ["command", "collection"])
STORE_SECONDS = Counter("mptf_store_command_seconds_total",
                        "Time the store's commands took (round trip, as the driver saw it), "
                        "by command and collection: over mptf_store_commands_total, the mean",
                        ["command", "collection"])
TX_RETRIES = Counter("mptf_transaction_retries_total",
                     "Store transactions retried after a transient error (a write conflict)")
BATCHES_RUN_AGAIN = Counter(
    "mptf_batches_run_again_total", "Consumed batches run a second time, reading the inbox "
    "first, because one of their events had been processed before (a redelivery)",
    ["consumer"])
SCHEDULER_SWEEPS = Counter(
    "mptf_scheduler_sweeps_total", "Sweeps of monitoring's scheduler (each reads the "
    "programmes whose next check has come)")
SCHEDULER_LOOKED_AT = Counter(
    "mptf_scheduler_programmes_looked_at_total", "Programmes evaluated by the scheduler's "
    "sweeps (those due, in this replica's shards): over the sweeps, what a sweep costs")
