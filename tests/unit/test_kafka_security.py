"""Security settings and the one factory every Kafka client's connection comes from."""

import asyncio
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from faststream.security import BaseSecurity, SASLOAuthBearer, SASLScram512
from pydantic import SecretStr

from claim_scrubber.adapters.kafka.security import (
    ClientCredentialsTokenProvider,
    OAuthTokenError,
    OAuthTokenRefusedError,
    OAuthTokenUnavailableError,
    connection,
)
from claim_scrubber.adapters.settings import Settings, SettingsError, load_settings
from tests.token_endpoint import TokenEndpoint, token_endpoint

CANARY = "canary-secret-7f3a9c"


def _load(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(f"SCRUBBER_{name}", value)
    return load_settings()


class TestInconsistentSettings:
    @pytest.mark.parametrize(
        ("env", "expected"),
        [
            (
                {"KAFKA_SASL_MECHANISM": "PLAIN"},
                "SCRUBBER_KAFKA_SASL_MECHANISM needs SCRUBBER_KAFKA_SECURITY_PROTOCOL",
            ),
            (
                {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
                "SASL_SSL needs SCRUBBER_KAFKA_SASL_MECHANISM",
            ),
            (
                {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"},
                "needs SCRUBBER_KAFKA_SASL_USERNAME",
            ),
            (
                {
                    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                    "KAFKA_SASL_USERNAME": "scrubber",
                    "KAFKA_SASL_PASSWORD": CANARY,
                    "KAFKA_SASL_PASSWORD_FILE": "/run/secrets/password",
                },
                "exactly one of SCRUBBER_KAFKA_SASL_PASSWORD and",
            ),
            (
                {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERT_FILE": "/tls/client.crt"},
                "SCRUBBER_KAFKA_SSL_CERT_FILE and SCRUBBER_KAFKA_SSL_KEY_FILE go together",
            ),
            (
                {"KAFKA_SSL_CA_FILE": "/tls/ca.pem"},
                "TLS files are set but SCRUBBER_KAFKA_SECURITY_PROTOCOL is PLAINTEXT",
            ),
            (
                {
                    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                    "KAFKA_SASL_MECHANISM": "OAUTHBEARER",
                    "KAFKA_OAUTH_CLIENT_ID": "scrubber",
                },
                "OAUTHBEARER needs SCRUBBER_KAFKA_OAUTH_TOKEN_URL",
            ),
        ],
    )
    def test_a_combination_that_cannot_work_is_refused_in_one_line(
        self, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
    ) -> None:
        with pytest.raises(SettingsError) as refused:
            _load(monkeypatch, **env)

        message = str(refused.value)
        assert expected in message
        assert "\n" not in message
        assert CANARY not in message


@pytest.fixture
def scram_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    password_file = tmp_path / "password"
    password_file.write_text(f"{CANARY}\n")
    return _load(
        monkeypatch,
        KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
        KAFKA_SASL_USERNAME="scrubber",
        KAFKA_SASL_PASSWORD_FILE=str(password_file),
    )


class TestConnection:
    def test_a_password_file_is_read_once_and_never_shown(self, scram_settings: Settings) -> None:
        built = connection(scram_settings)

        assert built.client_args()["sasl_plain_password"] == CANARY
        assert built.client_args()["security_protocol"] == "SASL_SSL"
        assert built.client_args()["ssl_context"] is built.ssl_context
        assert CANARY not in repr(built)
        assert CANARY not in repr(scram_settings)
        security = built.faststream_security()
        assert isinstance(security, SASLScram512)
        assert security.use_ssl

    def test_an_unreadable_secret_file_is_one_line_naming_the_setting(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        settings = _load(
            monkeypatch,
            KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
            KAFKA_SASL_MECHANISM="PLAIN",
            KAFKA_SASL_USERNAME="scrubber",
            KAFKA_SASL_PASSWORD_FILE=str(tmp_path / "missing"),
        )

        with pytest.raises(SettingsError, match="cannot read SCRUBBER_KAFKA_SASL_PASSWORD_FILE"):
            connection(settings)

    def test_a_certificate_that_is_not_one_is_refused_at_start(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        (tmp_path / "client.crt").write_text("not a certificate")
        (tmp_path / "client.key").write_text(CANARY)
        settings = _load(
            monkeypatch,
            KAFKA_SECURITY_PROTOCOL="SSL",
            KAFKA_SSL_CERT_FILE=str(tmp_path / "client.crt"),
            KAFKA_SSL_KEY_FILE=str(tmp_path / "client.key"),
        )

        with pytest.raises(SettingsError, match="cannot use SCRUBBER_KAFKA_SSL_CERT_FILE") as bad:
            connection(settings)
        assert CANARY not in str(bad.value)

    def test_plaintext_gives_every_client_plaintext_and_faststream_no_security(self) -> None:
        built = connection(
            Settings.model_validate({"worker_id": "w", "kafka_bootstrap_servers": "kafka:9092"})
        )

        assert built.client_args() == {
            "bootstrap_servers": "kafka:9092",
            "security_protocol": "PLAINTEXT",
        }
        assert built.faststream_security() is None

    def test_tls_without_sasl_is_faststream_ssl(self, monkeypatch: pytest.MonkeyPatch) -> None:
        built = connection(_load(monkeypatch, KAFKA_SECURITY_PROTOCOL="SSL"))

        security = built.faststream_security()
        assert type(security) is BaseSecurity
        assert security.use_ssl
        assert built.ssl_context is not None
        assert built.ssl_context.check_hostname


@pytest.fixture
def endpoint() -> Iterator[TokenEndpoint]:
    with token_endpoint(lambda n: f"token-{n}", lifetime_s=2) as serving:
        yield serving


def _provider(endpoint: TokenEndpoint, scope: str | None = None) -> ClientCredentialsTokenProvider:
    return ClientCredentialsTokenProvider(
        token_url=endpoint.url,
        client_id="scrubber",
        client_secret=SecretStr(CANARY),
        scope=scope,
    )


class TestOAuthTokens:
    async def test_a_token_is_reused_until_most_of_its_lifetime_has_passed_then_refreshed(
        self, endpoint: TokenEndpoint
    ) -> None:
        provider = _provider(endpoint, scope="kafka")

        first, again = await provider.token(), await provider.token()
        await asyncio.sleep(1.7)  # past 80 % of a 2 s lifetime
        refreshed = await provider.token()

        assert (first, again, refreshed) == ("token-0", "token-0", "token-1")
        assert CANARY not in repr(provider)

    async def test_refused_client_credentials_are_one_clear_error_without_the_secret(
        self, endpoint: TokenEndpoint
    ) -> None:
        endpoint.refuse = True
        provider = _provider(endpoint)

        with pytest.raises(OAuthTokenError, match="refused client 'scrubber' \\(HTTP 401\\)") as e:
            await provider.token()
        assert CANARY not in str(e.value)

    async def test_an_identity_outage_keeps_the_token_in_hand_until_it_really_expires(
        self, endpoint: TokenEndpoint
    ) -> None:
        provider = _provider(endpoint)
        first = await provider.token()
        endpoint.down_status = 503

        await asyncio.sleep(1.7)  # due for a refresh, but the endpoint is down
        during = await provider.token()
        await asyncio.sleep(0.5)  # past the 2 s lifetime: nothing valid is left
        with pytest.raises(OAuthTokenUnavailableError, match="HTTP 503") as outage:
            await provider.token()
        endpoint.down_status = None
        await asyncio.sleep(1.1)  # the retry's backoff
        after = await provider.token()

        assert (first, during, after) == ("token-0", "token-0", "token-1")
        assert CANARY not in str(outage.value)

    async def test_a_refusal_is_final_and_an_outage_is_not(self, endpoint: TokenEndpoint) -> None:
        provider = _provider(endpoint)
        endpoint.refuse = True
        with pytest.raises(OAuthTokenRefusedError):
            await provider.token()
        endpoint.refuse, endpoint.down_status = False, 502
        with pytest.raises(OAuthTokenUnavailableError):
            await provider.token()

    async def test_a_redirect_is_refused_and_the_credentials_never_follow_it(
        self, endpoint: TokenEndpoint
    ) -> None:
        with token_endpoint(lambda n: f"elsewhere-{n}", lifetime_s=2) as elsewhere:
            endpoint.redirect_to = elsewhere.url
            provider = _provider(endpoint)

            with pytest.raises(OAuthTokenRefusedError, match="redirect"):
                await provider.token()
            assert elsewhere.requests == 0


class TestTokenEndpointSettings:
    @pytest.mark.parametrize(
        "url",
        ["https://idp.example.com/token", "http://127.0.0.1:8080/token", "http://localhost/t"],
    )
    def test_https_or_loopback_token_urls_are_accepted(
        self, monkeypatch: pytest.MonkeyPatch, url: str
    ) -> None:
        assert _oauth_settings(monkeypatch, url).kafka_oauth_token_url == url

    def test_a_plain_http_token_url_off_this_machine_stops_start_up(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        with pytest.raises(SettingsError, match=r"SCRUBBER_KAFKA_OAUTH_TOKEN_URL.*https") as e:
            _oauth_settings(monkeypatch, "http://idp.example.com/token")
        assert "\n" not in str(e.value)

    def test_the_token_endpoint_can_be_verified_against_its_own_ca(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        missing = tmp_path / "idp-ca.pem"
        monkeypatch.setenv("SCRUBBER_KAFKA_OAUTH_CA_FILE", str(missing))
        settings = _oauth_settings(monkeypatch, "https://idp.example.com/token")

        with pytest.raises(SettingsError, match="SCRUBBER_KAFKA_OAUTH_CA_FILE"):
            connection(settings)


def _oauth_settings(monkeypatch: pytest.MonkeyPatch, url: str) -> Settings:
    return _load(
        monkeypatch,
        KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        KAFKA_SASL_MECHANISM="OAUTHBEARER",
        KAFKA_OAUTH_TOKEN_URL=url,
        KAFKA_OAUTH_CLIENT_ID="scrubber",
        KAFKA_OAUTH_CLIENT_SECRET=CANARY,
    )


class _FakeSigner:
    regions: ClassVar[list[str]] = []

    @classmethod
    def generate_auth_token(cls, region: str) -> tuple[str, int]:
        cls.regions.append(region)
        return f"msk-token-{len(cls.regions)}", int((time.time() + 900) * 1000)


class _BrokenSigner:
    @classmethod
    def generate_auth_token(cls, region: str) -> tuple[str, int]:
        raise RuntimeError(f"no credentials for {region}")


def _msk_settings(monkeypatch: pytest.MonkeyPatch, signer_class: type) -> Settings:
    """MSK IAM settings, with `signer_class` standing in for the msk extra's signer."""
    signer = types.ModuleType("aws_msk_iam_sasl_signer")
    signer.MSKAuthTokenProvider = signer_class  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "aws_msk_iam_sasl_signer", signer)
    return _load(
        monkeypatch,
        KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        KAFKA_SASL_MECHANISM="OAUTHBEARER",
        KAFKA_MSK_IAM_REGION="us-east-1",
    )


class TestMskIam:
    async def test_a_signer_failure_is_an_outage_not_a_crash(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        provider = connection(_msk_settings(monkeypatch, _BrokenSigner)).token_provider
        assert provider is not None

        with pytest.raises(OAuthTokenUnavailableError, match="RuntimeError"):
            await provider.token()

    async def test_msk_iam_tokens_come_from_the_signer_for_the_configured_region(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        built = connection(_msk_settings(monkeypatch, _FakeSigner))

        assert built.token_provider is not None
        assert await built.token_provider.token() == "msk-token-1"
        assert await built.token_provider.token() == "msk-token-1", "reused while fresh"
        assert _FakeSigner.regions == ["us-east-1"]
        assert isinstance(built.faststream_security(), SASLOAuthBearer)

    def test_msk_iam_without_the_msk_extra_is_one_line_saying_what_to_install(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(sys.modules, "aws_msk_iam_sasl_signer", None)
        settings = _load(
            monkeypatch,
            KAFKA_SECURITY_PROTOCOL="SASL_SSL",
            KAFKA_SASL_MECHANISM="OAUTHBEARER",
            KAFKA_MSK_IAM_REGION="us-east-1",
        )

        with pytest.raises(SettingsError, match=r"pip install 'claim-scrubber\[msk\]'"):
            connection(settings)
