"""Structured logging: one JSON object per line, for our events and for every library's logs.

PHI safety is by construction: our events carry only allow-listed identifiers, and an
exception is logged as its type and stack frames, never its message, unless it comes from
the Kafka client or the operating system (whose messages describe connections, not claims).
"""

import logging
import sys
import traceback
from collections.abc import MutableMapping
from types import TracebackType
from typing import Any, BinaryIO, Literal, TextIO

import orjson
import structlog
from structlog.typing import FilteringBoundLogger

__all__ = ["FilteringBoundLogger", "configure_logging", "get_logger"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_QUIET_LIBRARIES = ("aiokafka", "faststream", "kafka", "asyncio")
_SAFE_MESSAGE_MODULES = ("aiokafka", "kafka")
_SAFE_MESSAGE_TYPES = (OSError, TimeoutError, ConnectionError)

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def _exc_info(value: object) -> ExcInfo | None:
    if isinstance(value, BaseException):
        return (type(value), value, value.__traceback__)
    if isinstance(value, tuple) and len(value) == 3 and value[1] is not None:
        return value
    if value is True:
        current = sys.exc_info()
        return current if current[1] is not None else None
    return None


def _message_is_safe(error: BaseException) -> bool:
    module = type(error).__module__.split(".")[0]
    if module in _SAFE_MESSAGE_MODULES:
        return True
    return isinstance(error, _SAFE_MESSAGE_TYPES)


def _safe_exception(
    logger: object, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Replace exc_info by the error's type and stack frames; keep a message only when safe."""
    del logger, method
    for key in ("exc_info", "exception"):
        info = _exc_info(event_dict.pop(key, None))
        if info is None:
            continue
        error_type, error, trace = info
        event_dict["error_type"] = f"{error_type.__module__}.{error_type.__qualname__}"
        if _message_is_safe(error):
            event_dict["error"] = str(error)
        event_dict["stack"] = [
            f"{frame.filename}:{frame.lineno} in {frame.name}"
            for frame in traceback.extract_tb(trace)
        ]
    event_dict.pop("stack_info", None)
    return event_dict


def _orjson_text(logger: object, method: str, event_dict: MutableMapping[str, Any]) -> str:
    del logger, method
    return orjson.dumps(event_dict, default=str).decode("utf-8")


def _orjson_bytes(logger: object, method: str, event_dict: MutableMapping[str, Any]) -> bytes:
    del logger, method
    return orjson.dumps(event_dict, default=str)


def _no_library_debug(record: logging.LogRecord) -> bool:
    return record.levelno > logging.DEBUG or record.name.startswith("claim_scrubber")


class _LibraryRateLimit(logging.Filter):
    """At most one record per library message every `interval_s`; the next one that passes
    carries `suppressed`, the count dropped meanwhile. While the broker is down aiokafka
    repeats its connection warnings thousands of times a second; our own events are exempt."""

    def __init__(self, interval_s: float = 10.0) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._last: dict[tuple[str, object], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("claim_scrubber"):
            return True
        key = (record.name, record.msg)
        last_at, suppressed = self._last.get(key, (float("-inf"), 0))
        if record.created - last_at < self._interval_s:
            self._last[key] = (last_at, suppressed + 1)
            return False
        self._last[key] = (record.created, 0)
        if suppressed:
            record.suppressed = suppressed
        return True


def configure_logging(
    *,
    log_format: Literal["json", "console"] = "json",
    level: Literal["debug", "info", "warning", "error"] = "info",
    stream: TextIO | None = None,
    one_shot: bool = False,
) -> None:
    """Send structlog events and stdlib records (aiokafka, FastStream) to one stream.

    `one_shot` is for a command that reports its own outcome (`send`, `tail`, `dead-letters`):
    the libraries' warnings (a retry the client made and won) are left out below debug.
    """
    target = stream if stream is not None else sys.stdout
    numeric_level = _LEVELS[level]
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        _safe_exception,
    ]
    stdlib_renderer: Any
    if log_format == "json":
        binary: BinaryIO = target.buffer
        structlog.configure(
            processors=[*shared, _orjson_bytes],
            wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
            logger_factory=structlog.BytesLoggerFactory(binary),
            cache_logger_on_first_use=True,
        )
        stdlib_renderer = _orjson_text
    else:
        stdlib_renderer = structlog.dev.ConsoleRenderer(colors=False)
        structlog.configure(
            processors=[*shared, stdlib_renderer],
            wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
            logger_factory=structlog.PrintLoggerFactory(target),
            cache_logger_on_first_use=True,
        )

    handler = logging.StreamHandler(target)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ExtraAdder(allow=["suppressed"]),
                *shared,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                stdlib_renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric_level)
    # Library debug records can quote whole records (aiokafka's "Sending (key=... value=...)"):
    # libraries log at INFO at the most, even when the worker itself logs at debug.
    if numeric_level == logging.DEBUG:
        library_level = logging.INFO
    else:
        library_level = logging.ERROR if one_shot else logging.WARNING
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(library_level)
    handler.addFilter(_no_library_debug)
    handler.addFilter(_LibraryRateLimit())


def get_logger(**context: object) -> FilteringBoundLogger:
    logger: FilteringBoundLogger = structlog.get_logger().bind(**context)
    return logger
