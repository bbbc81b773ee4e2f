"""The worker's settings: environment variables with the SCRUBBER_ prefix, nothing else."""

import difflib
import os
import socket
import urllib.parse
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "ENV_PREFIX",
    "OfflineSettings",
    "Settings",
    "SettingsError",
    "load_offline_settings",
    "load_settings",
    "read_secret_file",
    "settings_report",
]

ENV_PREFIX = "SCRUBBER_"


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class SettingsError(Exception):
    """A setting is unknown or invalid; the message is one line naming the variable."""


def read_secret_file(path: Path, setting: str) -> SecretStr:
    """A secret from its file (trimmed); SettingsError names the setting, never the content."""
    try:
        text = path.read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise SettingsError(f"cannot read {setting} {path} ({type(error).__name__})") from None
    if not text:
        raise SettingsError(f"{setting} {path} is empty")
    return SecretStr(text)


def _settings_config(*, extra: Literal["ignore", "forbid"]) -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        frozen=True,
        hide_input_in_errors=True,
        extra=extra,
    )


class OfflineSettings(BaseSettings):
    """What the offline commands (`scrub`, `rules`, `impact`) read: a worker-only setting,
    even an invalid one, never stops them."""

    model_config = _settings_config(extra="ignore")

    ruleset: Path | None = Field(default=None, description="ruleset file; default: the shipped one")
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    max_message_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    intake_timezone: str = Field(
        default="UTC", description="IANA zone of X12 dates and times (BHT04/BHT05)"
    )

    @field_validator("intake_timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not an IANA time zone name (e.g. UTC, America/Chicago)") from None
        return name

    @property
    def intake_zone(self) -> ZoneInfo:
        return ZoneInfo(self.intake_timezone)


class Settings(OfflineSettings):
    """Everything the worker reads."""

    model_config = _settings_config(extra="forbid")

    kafka_bootstrap_servers: Annotated[str, Field(min_length=1)] = "localhost:9092"
    group_id: Annotated[str, Field(min_length=1)] = "claim-scrubber"
    topic_input: Annotated[str, Field(min_length=1)] = "claims.submitted"
    topic_clean: Annotated[str, Field(min_length=1)] = "claims.clean"
    topic_review: Annotated[str, Field(min_length=1)] = "claims.needs-review"
    topic_dead_letter: Annotated[str, Field(min_length=1)] = "claims.dead-letter"
    topic_inbound_x12: Annotated[str, Field(min_length=1)] = Field(
        default="claims.inbound.x12", description="intake: one X12 837P interchange per record"
    )
    topic_inbound_fhir: Annotated[str, Field(min_length=1)] = Field(
        default="claims.inbound.fhir", description="intake: one FHIR Claim or Bundle per record"
    )
    topic_by_patient: Annotated[str, Field(min_length=1)] = Field(
        default="claims.by-patient",
        description="history on: the input re-keyed by patient (internal)",
    )
    topic_history: Annotated[str, Field(min_length=1)] = Field(
        default="claims.history",
        description="history on: the compacted history changelog (internal, PHI-derived)",
    )
    history: Literal["on", "off"] = Field(
        default="off",
        description="on: judge each claim against the patient's earlier claims (claim history)",
    )
    history_key: SecretStr | None = Field(
        default=None, description="the secret of the patient key (HMAC-SHA256)"
    )
    history_key_file: Path | None = None
    history_retention_days: Annotated[int, Field(ge=1, le=3650)] = Field(
        default=400, description="applications older than this before an event's time are dropped"
    )
    review_port: Annotated[int, Field(ge=1, le=65535)] = Field(
        default=8081, description="claim-scrubber review: the page's port"
    )
    review_bind: Annotated[str, Field(min_length=1)] = Field(
        default="127.0.0.1", description="claim-scrubber review: the address it listens on"
    )
    review_token_file: Path | None = Field(
        default=None, description="claim-scrubber review: the bearer token every request needs"
    )
    review_open: bool = Field(
        default=False,
        description="claim-scrubber review: no token, for a local demo bound to loopback only",
    )
    review_window_days: Annotated[int, Field(ge=1, le=3650)] = Field(
        default=30, description="claim-scrubber review: days of results read at start"
    )
    topic_partitions: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=6, description="partitions of the topics `make kafka-up` creates (not the worker)"
    )
    batch_max_records: Annotated[int, Field(ge=1, le=10_000)] = 500
    batch_max_bytes: Annotated[int, Field(ge=1024, le=256 * 1024 * 1024)] = Field(
        default=8 * 1024 * 1024,
        description="input bytes decided and committed in one round; a fetched batch over "
        "this is committed in rounds, and a larger record is a round of its own",
    )
    batch_timeout_ms: Annotated[int, Field(ge=1, le=60_000)] = 100
    session_timeout_ms: Annotated[int, Field(ge=6_000, le=300_000)] = Field(
        default=10_000,
        description="at least 6 s: the broker's group.min.session.timeout.ms default, and "
        "room for a batch's transactions between heartbeats",
    )
    transaction_timeout_ms: Annotated[int, Field(ge=1_000, le=900_000)] = 60_000
    shutdown_timeout_s: Annotated[float, Field(gt=0, le=300)] = 30.0
    startup_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    worker_id: Annotated[str, Field(min_length=1, max_length=200)] = Field(
        default_factory=_default_worker_id
    )
    http_port: Annotated[int, Field(ge=0, le=65535)] = Field(
        default=8080, description="/metrics, /livez and /readyz; 0 turns the server off"
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT",
        description="the standard OpenTelemetry variable; tracing is on when it is set",
    )
    otel_traces_exporter: str | None = Field(
        default=None,
        validation_alias="OTEL_TRACES_EXPORTER",
        description="the standard OpenTelemetry variable: otlp, console or none",
    )
    otel_service_name: str = Field(default="claim-scrubber", validation_alias="OTEL_SERVICE_NAME")

    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: (
        Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None
    ) = None
    kafka_sasl_username: Annotated[str, Field(min_length=1)] | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_sasl_password_file: Path | None = None
    kafka_ssl_ca_file: Path | None = None
    kafka_ssl_cert_file: Path | None = None
    kafka_ssl_key_file: Path | None = None
    kafka_ssl_check_hostname: bool = True
    kafka_oauth_token_url: Annotated[str, Field(pattern=r"^https?://")] | None = None
    kafka_oauth_ca_file: Path | None = Field(
        default=None, description="CA bundle for the token endpoint (default: the system's)"
    )
    kafka_oauth_client_id: Annotated[str, Field(min_length=1)] | None = None
    kafka_oauth_client_secret: SecretStr | None = None
    kafka_oauth_client_secret_file: Path | None = None
    kafka_oauth_scope: str | None = None
    kafka_msk_iam_region: Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")] | None = (
        Field(
            default=None,
            description="Amazon MSK IAM: OAUTHBEARER tokens signed for this AWS region "
            "(needs the msk extra) instead of a token endpoint",
        )
    )

    @field_validator("kafka_oauth_token_url")
    @classmethod
    def _token_url_is_private(cls, url: str | None) -> str | None:
        """The client secret goes out as Basic auth: only over https, or to this machine."""
        if url is None or url.startswith("https://"):
            return url
        host = (urllib.parse.urlsplit(url).hostname or "").lower()
        if host in {"localhost", "::1"} or host.startswith("127."):
            return url
        raise ValueError("must be https (plain http only to a loopback address)")

    @property
    def intake_group_id(self) -> str:
        """The consumer group of `claim-scrubber intake` (the worker's is group_id)."""
        return f"{self.group_id}.intake"

    @model_validator(mode="after")
    def _topics_are_distinct(self) -> "Settings":
        """An output equal to the input would feed the worker its own results forever; two
        equal outputs would mix results nobody could tell apart."""
        named = {
            "SCRUBBER_TOPIC_INPUT": self.topic_input,
            "SCRUBBER_TOPIC_CLEAN": self.topic_clean,
            "SCRUBBER_TOPIC_REVIEW": self.topic_review,
            "SCRUBBER_TOPIC_DEAD_LETTER": self.topic_dead_letter,
            "SCRUBBER_TOPIC_INBOUND_X12": self.topic_inbound_x12,
            "SCRUBBER_TOPIC_INBOUND_FHIR": self.topic_inbound_fhir,
            "SCRUBBER_TOPIC_BY_PATIENT": self.topic_by_patient,
            "SCRUBBER_TOPIC_HISTORY": self.topic_history,
        }
        seen: dict[str, str] = {}
        for setting, topic in named.items():
            if topic in seen:
                message = f"{setting} names the same topic as {seen[topic]}; the topics must differ"
                raise ValueError(message)
            seen[topic] = setting
        return self

    @model_validator(mode="after")
    def _history_has_a_key(self) -> "Settings":
        """History on keys every patient by the secret: without exactly one, refuse to start."""
        if self.history == "on" and (self.history_key is None) == (self.history_key_file is None):
            raise ValueError(
                "SCRUBBER_HISTORY=on needs exactly one of SCRUBBER_HISTORY_KEY and "
                "SCRUBBER_HISTORY_KEY_FILE (the secret of the patient key)"
            )
        return self

    @property
    def history_on(self) -> bool:
        return self.history == "on"

    def history_secret(self) -> bytes:
        """The patient key's secret (history on); SettingsError when its file is unusable."""
        secret = self.history_key
        if secret is None:
            assert self.history_key_file is not None
            secret = read_secret_file(self.history_key_file, "SCRUBBER_HISTORY_KEY_FILE")
        return secret.get_secret_value().encode("utf-8")

    @property
    def by_patient_group_id(self) -> str:
        """History on: the group of the scrubbing stage, which reads the input re-keyed by
        patient (group_id keeps reading the input, which it now re-keys)."""
        return f"{self.group_id}.by-patient"

    @model_validator(mode="after")
    def _security_is_consistent(self) -> "Settings":
        """Settings that cannot work together stop the worker at start, named."""
        problem = self._sasl_problem() or self._tls_problem()
        if problem is not None:
            raise ValueError(problem)
        return self

    def _sasl_problem(self) -> str | None:  # noqa: PLR0911 - one answer per combination
        protocol, mechanism = self.kafka_security_protocol, self.kafka_sasl_mechanism
        sasl = protocol.startswith("SASL_")
        if mechanism is not None and not sasl:
            return (
                "SCRUBBER_KAFKA_SASL_MECHANISM needs SCRUBBER_KAFKA_SECURITY_PROTOCOL "
                "SASL_PLAINTEXT or SASL_SSL"
            )
        if sasl and mechanism is None:
            return (
                f"SCRUBBER_KAFKA_SECURITY_PROTOCOL {protocol} needs SCRUBBER_KAFKA_SASL_MECHANISM"
            )
        if self.kafka_msk_iam_region is not None:
            if mechanism != "OAUTHBEARER":
                return (
                    "SCRUBBER_KAFKA_MSK_IAM_REGION needs SCRUBBER_KAFKA_SASL_MECHANISM OAUTHBEARER"
                )
            if self.kafka_oauth_token_url is not None:
                return (
                    "SCRUBBER_KAFKA_MSK_IAM_REGION and SCRUBBER_KAFKA_OAUTH_TOKEN_URL exclude "
                    "each other (MSK IAM signs its own tokens)"
                )
            return None
        if mechanism in {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}:
            if self.kafka_sasl_username is None:
                return f"SASL {mechanism} needs SCRUBBER_KAFKA_SASL_USERNAME"
            if (self.kafka_sasl_password is None) == (self.kafka_sasl_password_file is None):
                return (
                    f"SASL {mechanism} needs exactly one of SCRUBBER_KAFKA_SASL_PASSWORD and "
                    "SCRUBBER_KAFKA_SASL_PASSWORD_FILE"
                )
        if mechanism == "OAUTHBEARER":
            if self.kafka_oauth_token_url is None or self.kafka_oauth_client_id is None:
                return (
                    "SASL OAUTHBEARER needs SCRUBBER_KAFKA_OAUTH_TOKEN_URL and "
                    "SCRUBBER_KAFKA_OAUTH_CLIENT_ID (or SCRUBBER_KAFKA_MSK_IAM_REGION)"
                )
            if (self.kafka_oauth_client_secret is None) == (
                self.kafka_oauth_client_secret_file is None
            ):
                return (
                    "SASL OAUTHBEARER needs exactly one of SCRUBBER_KAFKA_OAUTH_CLIENT_SECRET "
                    "and SCRUBBER_KAFKA_OAUTH_CLIENT_SECRET_FILE"
                )
        return None

    def _tls_problem(self) -> str | None:
        if (self.kafka_ssl_cert_file is None) != (self.kafka_ssl_key_file is None):
            return (
                "SCRUBBER_KAFKA_SSL_CERT_FILE and SCRUBBER_KAFKA_SSL_KEY_FILE go together "
                "(mutual TLS needs the certificate and its key)"
            )
        tls_files = (self.kafka_ssl_ca_file, self.kafka_ssl_cert_file, self.kafka_ssl_key_file)
        protocol = self.kafka_security_protocol
        if protocol not in {"SSL", "SASL_SSL"} and any(f is not None for f in tls_files):
            return (
                f"TLS files are set but SCRUBBER_KAFKA_SECURITY_PROTOCOL is {protocol}; "
                "use SSL or SASL_SSL"
            )
        return None


def _refuse_unknown_settings() -> None:
    """Every command refuses a SCRUBBER_ variable that no command reads (a typo would
    otherwise fall back to a default silently), naming the closest known setting."""
    known = sorted(
        f"{ENV_PREFIX}{name.upper()}"
        for name, field in Settings.model_fields.items()
        if field.validation_alias is None
    )
    unknown = sorted(
        name
        for name in os.environ
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in known
    )
    if not unknown:
        return
    closest = difflib.get_close_matches(unknown[0].upper(), known, n=1)
    hint = f"did you mean {closest[0]}?" if closest else f"known: {', '.join(known)}"
    raise SettingsError(f"unknown setting {unknown[0]} ({hint})")


def load_settings() -> Settings:
    """Read the settings; an unknown SCRUBBER_ variable or a bad value raises SettingsError."""
    _refuse_unknown_settings()
    try:
        return Settings()
    except ValidationError as error:
        raise _one_line(error) from None


def load_offline_settings() -> OfflineSettings:
    """The offline commands' settings; SettingsError names a bad one of them, or a
    SCRUBBER_ variable that no command reads. A worker-only setting never stops them."""
    _refuse_unknown_settings()
    try:
        return OfflineSettings()
    except ValidationError as error:
        raise _one_line(error) from None


def settings_report(settings: Settings) -> list[tuple[str, str, str]]:
    """Every setting as (variable, value, "set" or "default"), secrets masked: what
    `claim-scrubber check` prints."""
    report = []
    for name, field in Settings.model_fields.items():
        variable = field.validation_alias or f"{ENV_PREFIX}{name.upper()}"
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            text = "********"
        else:
            text = (
                ""
                if value is None
                else str(value).lower()
                if isinstance(value, bool)
                else str(value)
            )
        origin = "set" if name in settings.model_fields_set else "default"
        report.append((str(variable), text, origin))
    return report


def _one_line(error: ValidationError) -> SettingsError:
    """The first problem, in one line naming the variable (never its value)."""
    problem = error.errors(include_url=False, include_input=False)[0]
    if not problem["loc"]:  # a check across settings names them itself
        message = str(problem["msg"]).removeprefix("Value error, ")
        return SettingsError(f"invalid settings: {message}")
    name = f"{ENV_PREFIX}{str(problem['loc'][0]).upper()}"
    message = str(problem["msg"]).removeprefix("Value error, ")
    return SettingsError(f"invalid setting {name}: {message}")
