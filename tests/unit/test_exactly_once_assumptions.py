"""What the exactly-once core assumes of its dependencies, pinned so that a change fails here
rather than silently in production."""

import inspect
import re
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from aiokafka.consumer.group_coordinator import GroupCoordinator

POM = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "pom.xml"


def test_the_broker_we_test_on_is_kafka_4_or_later() -> None:
    """The committed-offset re-read after InitProducerId relies on Kafka 4's group coordinator
    writing a transaction's offsets before the commit marker completes
    (docs/operating/delivery.md)."""
    version = re.search(r"<kafka.version>([0-9]+)\.([0-9]+)", POM.read_text("utf-8"))

    assert version is not None
    assert int(version.group(1)) >= 4


async def test_the_private_aiokafka_fields_the_membership_check_reads_are_still_there() -> None:
    """confirm_membership (adapters/kafka/group.py) reads consumer._coordinator and the
    coordinator's group_id, generation, member_id, coordinator_id and _send_req: if aiokafka
    moves them the check would answer "not a member" for ever, so this fails first."""
    consumer = AIOKafkaConsumer(group_id="g", bootstrap_servers="127.0.0.1:9")
    coordinator_init = inspect.getsource(GroupCoordinator.__init__)
    base_init = "".join(
        inspect.getsource(cls.__init__)
        for cls in GroupCoordinator.__mro__
        if "__init__" in vars(cls) and cls.__module__.startswith("aiokafka")
    )

    assert "_coordinator" in vars(consumer)
    for field in ("generation", "member_id", "group_id", "coordinator_id"):
        assert f"self.{field} =" in coordinator_init + base_init, field
    assert inspect.iscoroutinefunction(GroupCoordinator._send_req)
