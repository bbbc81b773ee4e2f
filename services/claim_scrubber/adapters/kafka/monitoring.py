"""A stage's operations wiring: its metrics, health flags and the HTTP server that serves
them, fed by the ownership machines of its input streams."""

from collections.abc import Sequence

from claim_scrubber.adapters.kafka.ownership import (
    PartitionOwnership,
)
from claim_scrubber.adapters.kafka.stage import StageError
from claim_scrubber.adapters.operations import (
    Health,
    OperationsServer,
    StageMetrics,
)

__all__ = ["StageOperations"]


class StageOperations:
    """The process's metrics, health flags and the HTTP server that serves them."""

    def __init__(self, port: int, ruleset_version: str, stage: str) -> None:
        self.metrics = StageMetrics(ruleset_version=ruleset_version, stage=stage)
        self.health = Health()
        self._port = port
        self._server: OperationsServer | None = None

    def watch(self, ownerships: Sequence[PartitionOwnership]) -> None:
        self.metrics.partitions_owned.set_function(
            lambda: sum(len(ownership.owned()) for ownership in ownerships)
        )
        for ownership in ownerships:
            self.metrics.watch_partitions(ownership.states)
        self.health.producers_up = lambda: all(ownership.settled for ownership in ownerships)

    def serve(self) -> None:
        """Start the server (port 0: none); a port that cannot be bound is a start-up error."""
        if not self._port:
            return
        try:
            self._server = OperationsServer(
                port=self._port, metrics=self.metrics, health=self.health
            )
        except OSError as error:
            raise StageError(
                f"cannot serve /metrics, /livez and /readyz on port {self._port} "
                f"({error.strerror or type(error).__name__}); set SCRUBBER_HTTP_PORT "
                "(0 turns the server off)"
            ) from None
        self._server.start()

    def broker_answered(self, answered: bool) -> None:  # noqa: FBT001 - a probe callback's flag
        self.health.broker_reachable = answered
        self.metrics.broker_reachable.set(1 if answered else 0)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
