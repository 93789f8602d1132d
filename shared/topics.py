"""Topic names: the public surface. One writer per fact topic; inbound topics are separate.

Key = the programme id (the contribution id for money that is not yet a programme's).
"""

INBOUND_CONCEPT_NOTES = "mptf.inbound.concept-notes"  # entity systems -> intake
INBOUND_PROGRESS_REPORTS = "mptf.inbound.progress-reports"  # entity systems -> monitoring
PROGRAMMES = "mptf.programmes"  # written by intake
FUNDING = "mptf.funding"  # written by funding; funders subscribe here
MONITORING = "mptf.monitoring"  # written by monitoring
NOTIFICATIONS = "mptf.notifications"  # written by notifications

ALL = (
    INBOUND_CONCEPT_NOTES,
    INBOUND_PROGRESS_REPORTS,
    PROGRAMMES,
    FUNDING,
    MONITORING,
    NOTIFICATIONS,
)


def dlq(topic: str) -> str:
    return f"{topic}.dlq"
