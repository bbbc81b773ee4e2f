"""`claim-scrubber review`: the coder's page (docs/consuming-results/review-page.md), served
until stopped."""

import asyncio
import ipaddress
import sys

from claim_scrubber.adapters.logging import configure_logging, get_logger
from claim_scrubber.adapters.ruleset_file import RulesetError, load_ruleset
from claim_scrubber.adapters.settings import (
    Settings,
    SettingsError,
    load_settings,
    read_secret_file,
)

__all__ = ["ReviewStartError", "run_review"]


class ReviewStartError(Exception):
    """The page cannot start: one line for the operator."""


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def review_token(settings: Settings) -> str | None:
    """The token every request needs; None only for an open demo on loopback."""
    if settings.review_token_file is not None:
        if settings.review_open:
            raise ReviewStartError(
                "SCRUBBER_REVIEW_OPEN and SCRUBBER_REVIEW_TOKEN_FILE exclude each other"
            )
        try:
            return read_secret_file(
                settings.review_token_file, "SCRUBBER_REVIEW_TOKEN_FILE"
            ).get_secret_value()
        except SettingsError as error:
            raise ReviewStartError(str(error)) from None
    if settings.review_open and _loopback(settings.review_bind):
        return None
    if settings.review_open:
        raise ReviewStartError(
            f"SCRUBBER_REVIEW_OPEN is for a local demo: bind to 127.0.0.1, not "
            f"{settings.review_bind}, or set SCRUBBER_REVIEW_TOKEN_FILE"
        )
    raise ReviewStartError(
        "the review page shows PHI: set SCRUBBER_REVIEW_TOKEN_FILE (or, bound to 127.0.0.1 for "
        "a local demo, SCRUBBER_REVIEW_OPEN=true)"
    )


def run_review() -> int:
    """Serve the page; ReviewStartError when it cannot start."""
    # The web and Kafka stacks are imported here only: the offline commands never load them.
    import uvicorn  # noqa: PLC0415

    from claim_scrubber.adapters.kafka import connection  # noqa: PLC0415
    from claim_scrubber.adapters.review.app import ReviewState, review_app  # noqa: PLC0415
    from claim_scrubber.adapters.review.feed import follow_results  # noqa: PLC0415

    try:
        settings = load_settings()
        kafka = connection(settings)
        ruleset = load_ruleset(settings.ruleset)
    except (SettingsError, RulesetError) as error:
        raise ReviewStartError(str(error)) from None
    token = review_token(settings)
    configure_logging(log_format=settings.log_format, level=settings.log_level)
    log = get_logger(worker_id=settings.worker_id)
    state = ReviewState(ruleset_version=ruleset.version)
    server = uvicorn.Server(
        uvicorn.Config(
            review_app(state, token),
            host=settings.review_bind,
            port=settings.review_port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
    )

    async def serve() -> None:
        ready = asyncio.Event()
        feed = asyncio.create_task(
            follow_results(
                kafka,
                [settings.topic_review, settings.topic_clean],
                state,
                window_days=settings.review_window_days,
                log=log,
                ready=ready,
            )
        )
        log.info(
            "review.started",
            url=f"http://{settings.review_bind}:{settings.review_port}/",
            token_required=token is not None,
            topics=[settings.topic_review, settings.topic_clean],
        )
        try:
            await server.serve()
        finally:
            feed.cancel()
            log.info("review.stopped")

    try:
        asyncio.run(serve())
    except OSError as error:
        print(
            f"claim-scrubber: error: cannot serve the review page: {error.strerror}",
            file=sys.stderr,
        )
        return 1
    return 0
