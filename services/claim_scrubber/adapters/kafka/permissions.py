"""The permissions a stage needs, checked at start (and, for reading, while it runs): Read on
its groups, its input topics and the history changelog, Write on its transactional ids;
refused ones stop it with one line naming the grant."""

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)

from claim_scrubber.adapters.kafka.security import (
    KafkaConnection,
)
from claim_scrubber.adapters.kafka.stage import Stage, StageError
from claim_scrubber.adapters.kafka.topic_sizes import admin_client

__all__ = ["check_permissions", "check_reading", "principal"]


def principal(kafka: KafkaConnection) -> str:
    if kafka.sasl_username:
        return f"user {kafka.sasl_username}"
    return "this worker's principal"


async def check_reading(stage: Stage, kafka: KafkaConnection) -> None:
    """Raise StageError without Read on the group or on an input topic."""
    admin = admin_client(kafka)
    group = stage.group_id
    try:
        await admin.start()
        for group in dict.fromkeys(stage.group_for(topic) for topic in stage.inputs):
            await admin.list_consumer_group_offsets(group)
    except GroupAuthorizationFailedError:
        raise StageError(
            f"{principal(kafka)} may not read consumer group {group} "
            f"(the {stage.name} needs Read on its groups)"
        ) from None
    except (KafkaError, OSError):
        return  # an outage: the probe reports it
    finally:
        await admin.close()
    # A fetch at the end of one input partition reads nothing, but needs Read on the topic.
    reader = AIOKafkaConsumer(**kafka.client_args(), group_id=None, request_timeout_ms=10_000)
    topic = stage.inputs[0]
    try:
        await reader.start()
        for topic in stage.read:
            partition = TopicPartition(topic, 0)
            reader.assign([partition])
            await reader.seek_to_end(partition)
            await reader.getmany(partition, timeout_ms=300)
    except TopicAuthorizationFailedError:
        raise StageError(
            f"{principal(kafka)} may not read topic {topic} "
            f"(the {stage.name} needs Read on the topics it reads: {', '.join(stage.read)})"
        ) from None
    except (KafkaError, OSError):
        return
    finally:
        await reader.stop()


async def check_permissions(stage: Stage, kafka: KafkaConnection) -> None:
    """Refuse to start, in one line, without Read on the group and the input topics or Write
    on the transactional ids (Write on the output topics shows at the first transaction,
    which then stops the process the same way, committing nothing)."""
    await check_reading(stage, kafka)
    for topic in stage.inputs:
        prefix = f"{stage.group_for(topic)}-{topic}-"
        transactional_id = f"{prefix}preflight"
        producer = AIOKafkaProducer(
            **kafka.client_args(), transactional_id=transactional_id, request_timeout_ms=10_000
        )
        try:
            await producer.start()
        except TransactionalIdAuthorizationFailed:
            raise StageError(
                f"{principal(kafka)} may not use transactional id {transactional_id} (the "
                f"{stage.name} needs Write and Describe on transactional ids prefixed {prefix})"
            ) from None
        except (KafkaError, OSError) as error:
            raise StageError(
                f"cannot start a transactional producer ({type(error).__name__})"
            ) from None
        finally:
            await producer.stop()
