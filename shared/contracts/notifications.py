"""Contracts owned by notifications: facts on mptf.notifications."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from shared import topics
from shared.contracts.base import Fact, register


class Notice(Fact):
    """What both outcomes of a notification name: the notification (fact, recipient,
    channel) and the fact it told of."""

    notification_id: str
    fact_id: str
    fact_type: str
    programme_id: str | None = None
    recipient: str
    channel: Literal["inbox", "webhook", "email"]


@register(topic=topics.NOTIFICATIONS, owner="notifications", key="programme_id", example={
    "notification_id": "n-1b2c", "fact_id": "6c0e8f8e-8a53-4a55-b0c4-4f7b4f4f1f10",
    "fact_type": "org.migrationmptf.programme.submitted.v1", "programme_id": "jp-3f1c0c1e9b7a4d2e",
    "recipient": "IOM", "channel": "inbox", "delivered_at": "2026-11-23T10:00:01Z"})
class NotificationDelivered(Notice):
    """A recipient was told of a fact through one channel."""

    TYPE = "org.migrationmptf.notification.delivered.v1"

    delivered_at: datetime


class Attempt(Notice):
    """What both failure facts say of the failed attempt."""

    attempts: int
    last_error: str
    failed_at: datetime


@register(topic=topics.NOTIFICATIONS, owner="notifications", key="programme_id", example={
    "notification_id": "n-1b2c", "fact_id": "6c0e8f8e-8a53-4a55-b0c4-4f7b4f4f1f10",
    "fact_type": "org.migrationmptf.programme.approved.v1", "programme_id": "jp-3f1c0c1e9b7a4d2e",
    "recipient": "IOM", "channel": "webhook", "attempts": 6,
    "last_error": "HTTP 503 from https://iom.example.org/mptf-hook",
    "failed_at": "2026-11-23T10:05:00Z"})
class NotificationFailed(Attempt):
    """A notification could not be delivered through one channel after its last attempt; it
    waits in the delivery dead letters (GET /v1/deliveries?status=dead) for a replay.

    With NotificationDelivered, NotificationRetrying, NotificationRequeued and
    NotificationRead, the facts say everything the delivery log holds: notifications is
    rebuilt from them (`mptf rebuild notifications`)."""

    TYPE = "org.migrationmptf.notification.failed.v1"


@register(topic=topics.NOTIFICATIONS, owner="notifications", key="programme_id", example={
    "notification_id": "n-1b2c", "fact_id": "6c0e8f8e-8a53-4a55-b0c4-4f7b4f4f1f10",
    "fact_type": "org.migrationmptf.programme.approved.v1", "programme_id": "jp-3f1c0c1e9b7a4d2e",
    "recipient": "ILO", "channel": "webhook", "attempts": 2,
    "last_error": "HTTP 503 from https://ilo.example.org/mptf-hook",
    "failed_at": "2026-11-23T10:00:03Z", "next_attempt_at": "2026-11-23T10:00:07Z"})
class NotificationRetrying(Attempt):
    """An attempt to deliver a notification failed; it is tried again from
    `next_attempt_at`."""

    TYPE = "org.migrationmptf.notification.retrying.v1"

    next_attempt_at: datetime


@register(topic=topics.NOTIFICATIONS, owner="notifications", key="programme_id", example={
    "notification_id": "n-1b2c", "fact_id": "6c0e8f8e-8a53-4a55-b0c4-4f7b4f4f1f10",
    "fact_type": "org.migrationmptf.programme.approved.v1", "programme_id": "jp-3f1c0c1e9b7a4d2e",
    "recipient": "UNICEF", "channel": "webhook", "requeued_at": "2026-11-24T08:00:00Z"})
class NotificationRequeued(Notice):
    """An operator sent a dead notification back to the queue (its receiver recovered)."""

    TYPE = "org.migrationmptf.notification.requeued.v1"

    requeued_at: datetime


@register(topic=topics.NOTIFICATIONS, owner="notifications", key="programme_id", example={
    "notification_id": "n-1b2c", "fact_id": "6c0e8f8e-8a53-4a55-b0c4-4f7b4f4f1f10",
    "fact_type": "org.migrationmptf.programme.approved.v1", "programme_id": "jp-3f1c0c1e9b7a4d2e",
    "recipient": "IOM", "channel": "inbox", "read_at": "2026-11-23T12:00:00Z"})
class NotificationRead(Notice):
    """The recipient marked an inbox notice read."""

    TYPE = "org.migrationmptf.notification.read.v1"

    read_at: datetime
