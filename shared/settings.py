"""Typed settings for every service (pydantic-settings: environment variables, then `.env`).

The infrastructure endpoints are read from the same variables everywhere, so one
`KAFKA_BOOTSTRAP_SERVERS` / `MONGODB_URL` points a whole stack (or the test suite) at real
servers. Service-specific values take the `MPTF_` prefix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Principal(BaseModel):
    """Who a bearer token speaks for."""

    role: Literal["entity", "fmu", "funder", "operator", "rco"]
    entity: str | None = None  # UN entity code, for role entity
    contributor: str | None = None  # contributor id, for role funder
    country: str | None = None  # ISO 3166 code, for role rco (a Resident Coordinator's office)
    name: str = ""


# Named principals of local development: accepted as opaque tokens only when a process runs
# with MPTF_AUTH_MODE=development; the tests and `mptf token` issue signed JWTs for them.
DEV_TOKENS: dict[str, dict[str, Any]] = {
    "dev-iom": {"role": "entity", "entity": "IOM", "name": "IOM programme system"},
    "dev-ilo": {"role": "entity", "entity": "ILO", "name": "ILO programme system"},
    "dev-undp": {"role": "entity", "entity": "UNDP", "name": "UNDP programme system"},
    "dev-unicef": {"role": "entity", "entity": "UNICEF", "name": "UNICEF programme system"},
    "dev-fmu": {"role": "fmu", "name": "Fund Management Unit"},
    "dev-funder-de": {"role": "funder", "contributor": "DEU", "name": "Germany"},
    "dev-operator": {"role": "operator", "name": "Operator"},
    "dev-rco-ph": {"role": "rco", "country": "PH", "name": "RC office, Philippines"},
}


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MPTF_", env_file=".env", extra="ignore", populate_by_name=True
    )

    service_name: str = "mptf"
    http_host: str = "127.0.0.1"
    http_port: int = 8000

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:19092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "MPTF_KAFKA_BOOTSTRAP_SERVERS"),
    )
    # Every Kafka client authenticates (SASL/SCRAM); the broker refuses anonymous ones. The
    # user name defaults to the service's own principal (svc-<service>, shared.kafka_acl).
    kafka_security_protocol: Literal["SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "SASL_PLAINTEXT",
        validation_alias=AliasChoices("KAFKA_SECURITY_PROTOCOL", "MPTF_KAFKA_SECURITY_PROTOCOL"))
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = Field(
        "SCRAM-SHA-512",
        validation_alias=AliasChoices("KAFKA_SASL_MECHANISM", "MPTF_KAFKA_SASL_MECHANISM"))
    kafka_username: str = Field(
        "", validation_alias=AliasChoices("KAFKA_USERNAME", "MPTF_KAFKA_USERNAME"))
    kafka_password: SecretStr = Field(
        SecretStr(""), validation_alias=AliasChoices("KAFKA_PASSWORD", "MPTF_KAFKA_PASSWORD"))
    # a JSON file {user: password} (made by mptf_cli.provision) the password is read from
    # when KAFKA_PASSWORD is not set
    kafka_credentials: str = ""
    kafka_ca_file: str = Field(  # the CA that signed the brokers' certificates (SASL_SSL)
        "", validation_alias=AliasChoices("KAFKA_CA_FILE", "MPTF_KAFKA_CA_FILE"))
    mongodb_url: str = Field(
        "mongodb://127.0.0.1:27117/?directConnection=true",
        validation_alias=AliasChoices("MONGODB_URL", "MPTF_MONGODB_URL"),
    )
    mongodb_database: str = ""  # defaults to mptf_<service_name>
    # Every Mongo client authenticates (SCRAM-SHA-256, in `admin`): the local stack's servers
    # refuse anonymous ones, and each service's user may read and write its own database
    # alone. The user name defaults to the service's own (svc-<service>); its password is
    # MONGODB_PASSWORD, else read from the JSON file {user: password} MPTF_MONGODB_CREDENTIALS
    # names (the local stack's). With neither, the client uses what MONGODB_URL says (a URL
    # may carry its own user and password).
    mongodb_username: str = Field(
        "", validation_alias=AliasChoices("MONGODB_USERNAME", "MPTF_MONGODB_USERNAME"))
    mongodb_password: SecretStr = Field(
        SecretStr(""), validation_alias=AliasChoices("MONGODB_PASSWORD", "MPTF_MONGODB_PASSWORD"))
    mongodb_credentials: str = ""
    # a transaction's closing writes in one command where the Mongo server takes client-level
    # bulk writes (8.0 and later: "auto"), or one per collection ("off")
    mongo_client_bulk_write: Literal["auto", "off"] = "auto"
    # Prefix for every topic name: lets a test run or a tenant use its own topics.
    topic_prefix: str = ""
    topic_partitions: int = 6
    topic_replication: int = 1

    consumer_group: str = ""  # defaults to mptf-<service_name>
    consumer_batch_max: int = 500
    # decode the records already fetched while a batch's transaction waits on the store
    # (shared.consumer): off, a subscription's CPU and its store work go by turns
    consumer_read_ahead: bool = True
    # what each subscriber may prefetch (aiokafka's defaults are 1 MiB a partition and 50 MiB
    # a fetch); a record larger than these still comes, alone (the broker returns at least
    # one record batch)
    consumer_partition_fetch_bytes: int = 256 * 1024
    consumer_fetch_max_bytes: int = 2 * 1024 * 1024
    max_body_bytes: int = 256 * 1024  # HTTP bodies and Kafka values above this are refused

    outbox_poll_seconds: float = 0.5
    outbox_batch_max: int = 500  # events per relay round (whole transactions: may be more)
    outbox_lease_seconds: float = 10.0
    # the outbox's shards, relayed by the live replicas in fair shares (shared.outbox); a
    # change of this number takes an outbox with nothing pending
    outbox_shards: int = 8
    # shared work among replicas (shared.lease): a member is alive while it renews its
    # document; one missing this long is reaped (its server sessions ended, its work handed
    # over) by another
    member_beat_seconds: float = 1.5
    member_ttl_seconds: float = 6.0
    # renewal goes on (from a thread) while the event loop is busy, up to this long: a
    # process whose loop made no progress for longer is taken for hung and reaped
    member_stall_seconds: float = 30.0
    work_shards: int = 8  # units of periodic work (monitoring's scheduler) among replicas
    # Retention (Store.prune, every retention_sweep_seconds): published outbox documents
    # are deleted as they are published (0), or marked sent and kept for inspection this
    # long (the published facts are in Kafka either way; a mark and a later delete cost the
    # local Mongo server twice a delete); consumed event ids longer than inbound topics
    # keep records (shared.topics: 7 days), so any record a consumer can still be handed
    # is recognised if it was processed already.
    outbox_keep_sent_hours: float = Field(0.0, ge=0)
    inbox_keep_days: float = 14.0
    retention_sweep_seconds: float = 300.0

    # Telemetry. exporter: none | otlp | zipkin | file | console
    otel_exporter: Literal["none", "otlp", "zipkin", "file", "console"] = "none"
    otel_endpoint: str = ""  # OTLP/HTTP traces URL or Zipkin spans URL
    otel_file: str = ""  # JSON-lines span file for exporter=file
    # The share of traces recorded and exported (head sampling, shared.telemetry.sampler):
    # decided where a trace begins (a submission, a meeting) from its trace id, and followed
    # by every span after it in every service, so a programme is traced whole or not at all.
    # A trace not kept still has its ids in the logs and in the events' traceparent.
    otel_sample_ratio: float = Field(1.0, ge=0, le=1)
    log_level: str = "INFO"
    log_file: str = ""  # also append JSON logs here (stdout always)

    # HTTP identity (shared.auth): JWTs signed by the issuer whose public keys are here.
    # Development tokens (DEV_TOKENS) are accepted only with auth_mode=development.
    auth_mode: Literal["production", "development"] = "production"
    auth_jwks: str = ""  # a JWKS file, or an https URL serving one
    auth_issuer: str = "mptf-local"
    auth_audience: str = "mptf"
    auth_leeway_seconds: float = 30.0  # clock skew allowed on exp and nbf

    @property
    def bootstrap_servers(self) -> list[str]:
        """The brokers' addresses, one per item (the setting lists them comma-separated)."""
        return [b.strip() for b in self.kafka_bootstrap_servers.split(",") if b.strip()]

    @property
    def database(self) -> str:
        return self.mongodb_database or f"mptf_{self.service_name}"

    @property
    def group_id(self) -> str:
        # prefixed like the topics, so an isolated run (a test, a tenant) has its own groups
        return self.consumer_group or f"{self.topic_prefix}mptf-{self.service_name}"

    @property
    def kafka_user(self) -> str:
        return self.kafka_username or f"svc-{self.service_name}"

    def kafka_options(self) -> dict[str, Any]:
        """The security options of every aiokafka client this process makes."""
        from shared.kafka import client_options

        password = _password(self.kafka_password, self.kafka_credentials, self.kafka_user)
        return client_options(self.kafka_user, password,
                              protocol=self.kafka_security_protocol,
                              mechanism=self.kafka_sasl_mechanism, ca_file=self.kafka_ca_file)

    @property
    def mongo_user(self) -> str:
        return self.mongodb_username or f"svc-{self.service_name}"

    def mongo_options(self) -> dict[str, Any]:
        """The credentials of every Mongo client this process makes (PyMongo's keyword
        arguments, which take precedence over a user in MONGODB_URL); none when no password
        is given, and then the URL's own, if any, apply."""
        password = _password(self.mongodb_password, self.mongodb_credentials, self.mongo_user)
        if not password:
            return {}
        out: dict[str, Any] = {"username": self.mongo_user, "password": password,
                               "authMechanism": "SCRAM-SHA-256"}
        if "authsource=" not in self.mongodb_url.lower():
            out["authSource"] = "admin"
        return out

    def topic(self, base: str) -> str:
        return f"{self.topic_prefix}{base}"


def _password(given: SecretStr, credentials_file: str, user: str) -> str:
    """A client's password: the one given, else `user`'s in the JSON file {user: password}
    (an unreadable file or a missing user: none, and the server refuses the client)."""
    password = given.get_secret_value()
    if not password and credentials_file:
        try:
            password = json.loads(Path(credentials_file).read_text()).get(user, "")
        except (OSError, ValueError):
            password = ""
    return password
