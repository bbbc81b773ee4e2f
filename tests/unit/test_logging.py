"""Log lines are JSON, and no path can put a claim value into one."""

import io
import logging

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError

from claim_scrubber.adapters.logging import configure_logging, get_logger


@pytest.fixture
def stream() -> io.TextIOWrapper:
    buffer = io.BytesIO()
    wrapper = io.TextIOWrapper(buffer, encoding="utf-8", write_through=True)
    configure_logging(log_format="json", level="debug", stream=wrapper)
    return wrapper


def _lines(stream: io.TextIOWrapper) -> list[dict[str, object]]:
    stream.flush()
    raw = stream.buffer.getvalue()  # type: ignore[attr-defined]
    return [orjson.loads(line) for line in raw.splitlines() if line.strip()]


class TestLogLines:
    def test_an_event_is_one_json_object_with_timestamp_and_level(
        self, stream: io.TextIOWrapper
    ) -> None:
        get_logger(worker_id="w1").info("worker.started", group_id="g")
        (line,) = _lines(stream)
        assert line["event"] == "worker.started"
        assert line["level"] == "info"
        assert line["worker_id"] == "w1"
        assert str(line["timestamp"]).endswith("Z")

    def test_library_records_go_through_the_same_json_output(
        self, stream: io.TextIOWrapper
    ) -> None:
        logging.getLogger("aiokafka.consumer").warning("Heartbeat failed for group %s", "g")
        (line,) = _lines(stream)
        assert line["event"] == "Heartbeat failed for group g"
        assert line["logger"] == "aiokafka.consumer"

    def test_library_debug_records_are_dropped_because_they_can_quote_payloads(
        self, stream: io.TextIOWrapper
    ) -> None:
        logging.getLogger("aiokafka.producer").debug("Sending (key=%s value=%s)", b"k", b"PHI")
        assert _lines(stream) == []


class TestExceptions:
    def test_an_exception_is_logged_by_type_and_frames_without_its_message(
        self, stream: io.TextIOWrapper
    ) -> None:
        try:
            raise ValueError("patient PHICANARY-FIRST could not be parsed")
        except ValueError:
            get_logger().exception("transaction.aborted")
        (line,) = _lines(stream)
        assert line["error_type"] == "builtins.ValueError"
        assert "PHICANARY" not in orjson.dumps(line).decode()
        assert line["stack"]

    def test_a_library_traceback_hides_the_message_too(self, stream: io.TextIOWrapper) -> None:
        try:
            raise KeyError("PHICANARY-LAST")
        except KeyError:
            logging.getLogger("faststream").exception("handler failed")
        assert "PHICANARY" not in orjson.dumps(_lines(stream)).decode()

    def test_kafka_connection_errors_keep_their_message_for_operators(
        self, stream: io.TextIOWrapper
    ) -> None:
        get_logger().warning("broker.unreachable", exc_info=KafkaConnectionError("no route"))
        (line,) = _lines(stream)
        assert "no route" in str(line["error"])


class TestLibraryFloods:
    def test_a_repeated_library_warning_is_logged_once_then_counted(
        self, stream: io.TextIOWrapper
    ) -> None:
        noisy = logging.getLogger("aiokafka.conn")
        for _ in range(500):
            noisy.warning("Unable connect to node with id %s", 1)
        logging.getLogger("aiokafka.client").warning("Unable to update metadata from %s", [1])
        lines = _lines(stream)
        assert [line["logger"] for line in lines] == ["aiokafka.conn", "aiokafka.client"]

    def test_our_own_events_are_never_rate_limited(self, stream: io.TextIOWrapper) -> None:
        log = get_logger()
        for _ in range(50):
            log.info("claim.scrubbed")
        assert len(_lines(stream)) == 50


class TestOneShotCommands:
    """`send`, `tail` and `dead-letters` report their own outcome: a retry the Kafka client
    made and won is not news to the person at the terminal (it was a JSON line in the middle
    of `send`'s summary right after `make run` started the broker)."""

    @pytest.fixture
    def command_stream(self) -> io.TextIOWrapper:
        wrapper = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)
        configure_logging(log_format="json", level="info", stream=wrapper, one_shot=True)
        return wrapper

    def test_a_retried_produce_is_not_printed(self, command_stream: io.TextIOWrapper) -> None:
        logging.getLogger("aiokafka.producer.sender").warning(
            "Got error produce response on topic-partition %s, retrying.", "claims.submitted-5"
        )
        assert _lines(command_stream) == []

    def test_a_client_error_still_is(self, command_stream: io.TextIOWrapper) -> None:
        logging.getLogger("aiokafka.client").error("Unable to update metadata from %s", [1])
        (line,) = _lines(command_stream)
        assert line["logger"] == "aiokafka.client"

    def test_at_debug_the_retries_are_shown(self) -> None:
        wrapper = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)
        configure_logging(log_format="json", level="debug", stream=wrapper, one_shot=True)
        logging.getLogger("aiokafka.producer.sender").warning("Got error produce response")
        (line,) = _lines(wrapper)
        assert line["level"] == "warning"
