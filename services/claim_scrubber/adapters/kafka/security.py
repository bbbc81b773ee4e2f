"""How every Kafka client of the project connects: one place builds it, once, from Settings.

The TLS context, the SASL arguments and the OAUTHBEARER token provider are built here and
handed to every client: FastStream's broker, each partition's transactional producer, the
start-up and watch admin clients, the benchmark and the test harness. No client builds its
own, so none can silently fall back to PLAINTEXT.

Secrets (the SASL password, the OAuth client secret) stay SecretStr until the one call that
hands them to aiokafka; they are read from their files here, at start, and never appear in a
log line, an exception or a repr.
"""

import asyncio
import base64
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson
from aiokafka.abc import AbstractTokenProvider
from aiokafka.errors import KafkaConnectionError
from faststream.security import (
    BaseSecurity,
    SASLOAuthBearer,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)
from pydantic import SecretStr

from claim_scrubber.adapters.settings import Settings, SettingsError, read_secret_file

__all__ = [
    "ClientCredentialsTokenProvider",
    "KafkaConnection",
    "MskIamTokenProvider",
    "OAuthTokenError",
    "OAuthTokenRefusedError",
    "OAuthTokenUnavailableError",
    "connection",
]

_REFRESH_AT: Final = 0.8
"""A token is replaced once this share of its lifetime has passed."""
_TOKEN_TIMEOUT_S: Final = 10.0
_RETRY_FIRST_S: Final = 1.0
_RETRY_MAX_S: Final = 30.0
_REFUSED_STATUSES: Final = frozenset({400, 401, 403})
"""What an OIDC token endpoint answers a client it will never serve (invalid_client, ...)."""


class OAuthTokenError(KafkaConnectionError):  # type: ignore[misc]
    """The token endpoint did not issue a token; the message says why, without secrets.

    A connection error to aiokafka: raised inside its connect, it is a failed connection that
    its clients retry, never an exception that ends their background tasks.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class OAuthTokenRefusedError(OAuthTokenError):
    """The token source refused this client (HTTP 400/401/403, a redirect, no token in a
    success): retrying cannot help, so start-up stops with one line."""


class OAuthTokenUnavailableError(OAuthTokenError):
    """No token can be had now (endpoint unreachable, 5xx or 429, an unreadable answer, a
    signer failure): an outage, ridden out with the token in hand while it is valid."""


class _RefreshingTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """Reuses a token until 80 % of its lifetime has passed, then asks `_fetch` for another
    (in a thread: both sources block). aiokafka calls `token()` for every new connection.

    During an outage of the token source the token in hand is served until it really
    expires, and the source is asked again after a backoff (1 s doubling to 30 s, never past
    the expiry); only when no valid token is left does `token()` raise OAuthTokenUnavailableError
    (connections then fail like an unreachable broker, and /readyz says 503).
    """

    def __init__(self) -> None:
        self._token: SecretStr | None = None
        self._refresh_at = 0.0
        self._expires_at = 0.0
        self._retry_s = 0.0
        self._lock = asyncio.Lock()

    def _fetch(self) -> tuple[str, float]:
        """A new token and its lifetime in seconds."""
        raise NotImplementedError

    async def token(self) -> str:
        async with self._lock:
            now = time.monotonic()
            if self._token is None or now >= self._refresh_at:
                try:
                    token, lifetime_s = await asyncio.to_thread(self._fetch)
                except OAuthTokenUnavailableError:
                    if self._token is None or now >= self._expires_at:
                        raise
                    self._retry_s = min(max(self._retry_s * 2, _RETRY_FIRST_S), _RETRY_MAX_S)
                    self._refresh_at = min(now + self._retry_s, self._expires_at)
                else:
                    self._token = SecretStr(token)
                    self._expires_at = now + lifetime_s
                    self._refresh_at = now + lifetime_s * _REFRESH_AT
                    self._retry_s = 0.0
            assert self._token is not None
            return self._token.get_secret_value()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A token endpoint that redirects is refused: the Basic credentials never follow it."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        del args, kwargs


class ClientCredentialsTokenProvider(_RefreshingTokenProvider):
    """OAUTHBEARER tokens from an OIDC token endpoint (client-credentials grant).

    aiokafka asks for a token on every new connection; a token is reused until 80 % of its
    lifetime has passed, then fetched again, so a connection the broker closes when its
    session expires (`connections.max.reauth.ms`) reconnects with a fresh one.
    """

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        client_secret: SecretStr,
        scope: str | None,
        ca_context: ssl.SSLContext | None = None,
    ) -> None:
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._scope = scope
        self._opener = urllib.request.build_opener(
            _NoRedirects(), urllib.request.HTTPSHandler(context=ca_context)
        )
        super().__init__()

    def __repr__(self) -> str:
        return f"ClientCredentialsTokenProvider(token_url={self._token_url!r})"

    def _fetch(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials"}
        if self._scope:
            form["scope"] = self._scope
        basic = base64.b64encode(
            f"{self._client_id}:{self._client_secret.get_secret_value()}".encode()
        ).decode("ascii")
        request = urllib.request.Request(  # noqa: S310 - the URL is validated as http(s)
            self._token_url,
            data=urllib.parse.urlencode(form).encode(),
            headers={
                "Authorization": f"Basic {basic}",
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
            method="POST",
        )
        try:
            with self._opener.open(request, timeout=_TOKEN_TIMEOUT_S) as response:
                body = orjson.loads(response.read())
        except urllib.error.HTTPError as error:
            if 300 <= error.code < 400:
                raise OAuthTokenRefusedError(
                    f"the token endpoint {self._token_url} answered with a redirect (HTTP "
                    f"{error.code}); set SCRUBBER_KAFKA_OAUTH_TOKEN_URL to the final URL"
                ) from None
            if error.code in _REFUSED_STATUSES:
                raise OAuthTokenRefusedError(
                    f"the token endpoint {self._token_url} refused client {self._client_id!r} "
                    f"(HTTP {error.code})"
                ) from None
            raise OAuthTokenUnavailableError(
                f"the token endpoint {self._token_url} is unavailable (HTTP {error.code})"
            ) from None
        except (urllib.error.URLError, OSError) as error:
            raise OAuthTokenUnavailableError(
                f"cannot reach the token endpoint {self._token_url} ({type(error).__name__})"
            ) from None
        except orjson.JSONDecodeError:
            raise OAuthTokenUnavailableError(
                f"the token endpoint {self._token_url} answered something that is not JSON"
            ) from None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise OAuthTokenRefusedError(
                f"the token endpoint {self._token_url} sent no access_token"
            )
        lifetime = body.get("expires_in", 300)
        return token, float(lifetime) if isinstance(lifetime, int | float) else 300.0


class MskIamTokenProvider(_RefreshingTokenProvider):
    """Amazon MSK IAM: OAUTHBEARER tokens signed with the process's AWS credentials by
    `aws-msk-iam-sasl-signer-python` (the `msk` extra), refreshed like any other token."""

    def __init__(self, *, region: str) -> None:
        try:
            from aws_msk_iam_sasl_signer import (  # type: ignore[import-not-found]  # noqa: PLC0415
                MSKAuthTokenProvider,
            )
        except ImportError:
            raise SettingsError(
                "SCRUBBER_KAFKA_MSK_IAM_REGION needs the msk extra: "
                "pip install 'claim-scrubber[msk]'"
            ) from None
        self._signer = MSKAuthTokenProvider
        self._region = region
        super().__init__()

    def __repr__(self) -> str:
        return f"MskIamTokenProvider(region={self._region!r})"

    def _fetch(self) -> tuple[str, float]:
        try:
            token, expiry_ms = self._signer.generate_auth_token(self._region)
        except Exception as error:  # noqa: BLE001 - botocore's credential and network errors
            raise OAuthTokenUnavailableError(
                f"the MSK IAM signer could not sign a token for {self._region} "
                f"({type(error).__name__})"
            ) from None
        return token, max(0.0, expiry_ms / 1000 - time.time())


def _token_endpoint_ca(ca_file: Path | None) -> ssl.SSLContext | None:
    """The trust for the token endpoint: its own CA file when set, else the system's."""
    if ca_file is None:
        return None
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as error:
        raise SettingsError(
            f"invalid setting SCRUBBER_KAFKA_OAUTH_CA_FILE: cannot load it ({type(error).__name__})"
        ) from None


@dataclass(frozen=True)
class KafkaConnection:
    """Bootstrap servers and security for every Kafka client (secrets kept out of repr)."""

    bootstrap_servers: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = field(default=None, repr=False)
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)
    token_provider: AbstractTokenProvider | None = field(default=None, repr=False)

    @property
    def uses_tls(self) -> bool:
        return self.ssl_context is not None

    def client_args(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient."""
        args: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.ssl_context is not None:
            args["ssl_context"] = self.ssl_context
        if self.sasl_mechanism is not None:
            args["sasl_mechanism"] = self.sasl_mechanism
        if self.sasl_password is not None:
            args["sasl_plain_username"] = self.sasl_username
            args["sasl_plain_password"] = self.sasl_password.get_secret_value()
        if self.token_provider is not None:
            args["sasl_oauth_token_provider"] = self.token_provider
        return args

    def faststream_security(self) -> BaseSecurity | None:
        """The same security as FastStream's KafkaBroker takes it (its token provider is
        passed beside it, as `sasl_oauth_token_provider`)."""
        use_ssl = self.security_protocol in {"SSL", "SASL_SSL"}
        if self.sasl_mechanism is None:
            return BaseSecurity(self.ssl_context, use_ssl=True) if use_ssl else None
        if self.sasl_mechanism == "OAUTHBEARER":
            return SASLOAuthBearer(self.ssl_context, use_ssl=use_ssl)
        assert self.sasl_username is not None
        assert self.sasl_password is not None
        security_class = {
            "PLAIN": SASLPlaintext,
            "SCRAM-SHA-256": SASLScram256,
            "SCRAM-SHA-512": SASLScram512,
        }[self.sasl_mechanism]
        return security_class(
            self.sasl_username,
            self.sasl_password.get_secret_value(),
            ssl_context=self.ssl_context,
            use_ssl=use_ssl,
        )


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(
            cafile=None if settings.kafka_ssl_ca_file is None else str(settings.kafka_ssl_ca_file)
        )
    except (OSError, ssl.SSLError) as error:
        raise SettingsError(
            f"cannot use SCRUBBER_KAFKA_SSL_CA_FILE {settings.kafka_ssl_ca_file} "
            f"({type(error).__name__})"
        ) from None
    context.check_hostname = settings.kafka_ssl_check_hostname
    if settings.kafka_ssl_cert_file is not None and settings.kafka_ssl_key_file is not None:
        try:
            context.load_cert_chain(
                str(settings.kafka_ssl_cert_file), str(settings.kafka_ssl_key_file)
            )
        except (OSError, ssl.SSLError) as error:
            raise SettingsError(
                f"cannot use SCRUBBER_KAFKA_SSL_CERT_FILE {settings.kafka_ssl_cert_file} with "
                f"SCRUBBER_KAFKA_SSL_KEY_FILE {settings.kafka_ssl_key_file} "
                f"({type(error).__name__})"
            ) from None
    return context


def connection(settings: Settings) -> KafkaConnection:
    """Read the secret files, build the TLS context and the token provider: once, at start.

    Raises SettingsError (one line, no secret) for an unreadable or unusable file.
    """
    protocol = settings.kafka_security_protocol
    ssl_context = _ssl_context(settings) if protocol in {"SSL", "SASL_SSL"} else None
    password = settings.kafka_sasl_password
    if password is None and settings.kafka_sasl_password_file is not None:
        password = read_secret_file(
            settings.kafka_sasl_password_file, "SCRUBBER_KAFKA_SASL_PASSWORD_FILE"
        )
    token_provider: AbstractTokenProvider | None = None
    if settings.kafka_sasl_mechanism == "OAUTHBEARER" and settings.kafka_msk_iam_region:
        token_provider = MskIamTokenProvider(region=settings.kafka_msk_iam_region)
    elif settings.kafka_sasl_mechanism == "OAUTHBEARER":
        secret = settings.kafka_oauth_client_secret
        if secret is None and settings.kafka_oauth_client_secret_file is not None:
            secret = read_secret_file(
                settings.kafka_oauth_client_secret_file, "SCRUBBER_KAFKA_OAUTH_CLIENT_SECRET_FILE"
            )
        assert settings.kafka_oauth_token_url is not None
        assert settings.kafka_oauth_client_id is not None
        assert secret is not None
        token_provider = ClientCredentialsTokenProvider(
            token_url=settings.kafka_oauth_token_url,
            client_id=settings.kafka_oauth_client_id,
            client_secret=secret,
            scope=settings.kafka_oauth_scope,
            ca_context=_token_endpoint_ca(settings.kafka_oauth_ca_file),
        )
    return KafkaConnection(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        security_protocol=protocol,
        sasl_mechanism=settings.kafka_sasl_mechanism,
        sasl_username=settings.kafka_sasl_username,
        sasl_password=None if settings.kafka_sasl_mechanism == "OAUTHBEARER" else password,
        ssl_context=ssl_context,
        token_provider=token_provider,
    )
