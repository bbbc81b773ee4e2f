"""Intake's audit line of one inbound input stays a bounded line, whatever the file's size."""

from zoneinfo import ZoneInfo

from claim_scrubber.adapters.conversion import Intake, audit_fields
from claim_scrubber.adapters.ruleset_file import load_ruleset
from tests.formats.samples import interchange, q4390_claim, subscriber, transaction


def test_a_large_interchange_lists_500_event_ids_and_counts_the_rest() -> None:
    parts = []
    for number in range(620):
        parts += [subscriber(2 + number), q4390_claim(f"C{number}")]
    intake = Intake(load_ruleset().payer_directory, ZoneInfo("UTC"))
    conversion = intake.convert("x12", interchange(transaction(*parts)))
    fields = audit_fields(conversion)
    assert fields["claims_converted"] == 620
    assert fields["event_ids"] == [claim.event_id for claim in conversion.converted[:500]]
    assert fields["event_ids_not_listed"] == 120
