"""Reading a record: which input is a claim event, and which dead-letter kind the rest get."""

import pytest

from claim_scrubber.models import DeadLetterKind
from claim_scrubber.scrubber import Accepted, Rejected, read_claim_event
from tests.claims import DELETE, PHI_CANARIES, canary_event, default_event, event_bytes, patched

LIMIT = 1024 * 1024


def _read(payload: bytes) -> Accepted | Rejected:
    return read_claim_event(payload, max_bytes=LIMIT)


def _rejected(payload: bytes) -> Rejected:
    result = _read(payload)
    assert isinstance(result, Rejected)
    return result


class TestAcceptedEvents:
    def test_the_contract_example_is_a_valid_claim_event(self) -> None:
        result = _read(event_bytes(default_event()))
        assert isinstance(result, Accepted)
        assert result.event.claim.claim_id == "CLM-2026-000123"

    def test_unknown_fields_are_ignored_and_kept_in_the_echoed_claim(self) -> None:
        document = patched(default_event(), {"claim.x_custom": {"a": 1}, "extra_top": True})
        result = _read(event_bytes(document))
        assert isinstance(result, Accepted)
        assert result.claim_document["x_custom"] == {"a": 1}

    @pytest.mark.parametrize(
        "patch",
        [
            {"claim.lines[0].line_number": 1.0},
            {"claim.lines[0].units": 2.5},
            {"claim.lines[0].charge": 412},
            {"claim.lines[0].charge": 412.5},
            {"claim.lines[0].unit_basis": None},
            {"claim.lines[0].unit_basis": DELETE},
            {"claim.documentation": None},
            {"claim.patient": DELETE},
            {"claim.rendering_provider": None},
            {"claim.diagnoses": []},
            {"occurred_at": "2026-11-20T10:04:05.5-05:00"},
            {"claim.billing_provider.npi": "not-an-npi"},
            {"claim.lines[0].units": 0},
            {"claim.lines[0].units": 12345678901234567890123},
            {"claim.lines[0].charge": 1e2},
            {"claim.lines[0].diagnosis_pointers": [1.0]},
            {"claim.documentation.wound.application_number": 2.0},
            {"claim.documentation.wound.area_cm2": 18},
        ],
    )
    def test_values_inside_a_well_formed_claim_are_accepted_for_the_rules(
        self, patch: dict[str, object]
    ) -> None:
        assert isinstance(_read(event_bytes(patched(default_event(), patch))), Accepted)

    def test_a_fractional_json_number_keeps_its_shortest_decimal_text(self) -> None:
        document = patched(default_event(), {"claim.lines[0].units": 2542.8})
        result = _read(event_bytes(document))
        assert isinstance(result, Accepted)
        assert str(result.event.claim.lines[0].units) == "2542.8"

    def test_occurred_at_is_normalized_to_utc(self) -> None:
        document = patched(default_event(), {"occurred_at": "2026-11-20T22:30:00-05:00"})
        result = _read(event_bytes(document))
        assert isinstance(result, Accepted)
        assert result.event.occurred_at.date().isoformat() == "2026-11-21"


class TestDeadLetterKinds:
    def test_a_record_over_the_limit_is_too_large(self) -> None:
        result = read_claim_event(b"{}" + b" " * 100, max_bytes=50)
        assert result == Rejected(
            DeadLetterKind.TOO_LARGE, "record value is 102 bytes; the limit is 50 bytes"
        )

    def test_bytes_that_are_not_utf8_are_an_invalid_encoding(self) -> None:
        assert _rejected(b'{"a": "\xc3\x28"}').kind is DeadLetterKind.INVALID_ENCODING

    @pytest.mark.parametrize("payload", [b"", b"   ", b"{", b"nope", b'{"a": NaN}', b"{'a': 1}"])
    def test_text_that_is_not_json_is_invalid_json(self, payload: bytes) -> None:
        assert _rejected(payload).kind is DeadLetterKind.INVALID_JSON

    @pytest.mark.parametrize("payload", [b"[]", b"1", b'"claim"', b"null", b"true"])
    def test_json_that_is_not_an_object_is_not_an_object(self, payload: bytes) -> None:
        assert _rejected(payload).kind is DeadLetterKind.NOT_AN_OBJECT

    @pytest.mark.parametrize("version", [DELETE, "2", 1, None, "1.0"])
    def test_a_missing_or_other_schema_version_is_unsupported(self, version: object) -> None:
        document = patched(default_event(), {"schema_version": version})
        rejected = _rejected(event_bytes(document))
        assert rejected.kind is DeadLetterKind.UNSUPPORTED_SCHEMA_VERSION
        assert rejected.event_id == "5b0e3f36-8a0e-4c55-9b39-2f1d6f0c2a11"

    @pytest.mark.parametrize(
        ("patch", "loc"),
        [
            ({"event_id": ""}, "event_id"),
            ({"event_type": "claim.deleted"}, "event_type"),
            ({"occurred_at": "2026-11-20T15:04:05"}, "occurred_at"),
            ({"occurred_at": 1763651045}, "occurred_at"),
            ({"occurred_at": "0001-01-01T00:00:00+05:30"}, "occurred_at"),
            ({"claim.claim_id": "CLM\u00011"}, "claim.claim_id"),
            ({"claim.claim_id": " CLM1"}, "claim.claim_id"),
            ({"claim.claim_id": "CLM1 "}, "claim.claim_id"),
            ({"claim.claim_id": "C" * 65}, "claim.claim_id"),
            ({"claim.claim_id": ""}, "claim.claim_id"),
            ({"claim.claim_id": "CLM-é"}, "claim.claim_id"),
            ({"claim.lines[0].place_of_service": 11}, "claim.lines.0.place_of_service"),
            ({"claim.attachments": [{"report_type": 7}]}, "claim.attachments.0.report_type"),
            ({"claim.claim_version": 0}, "claim.claim_version"),
            ({"claim.claim_type": "dental"}, "claim.claim_type"),
            ({"claim.payer.kind": "medicaid"}, "claim.payer.kind"),
            ({"claim.billing_provider.npi": 1245319599}, "claim.billing_provider.npi"),
            ({"claim.diagnoses": "E11.621"}, "claim.diagnoses"),
            ({"claim.diagnoses": ["L97.412"] * 13}, "claim.diagnoses"),
            ({"claim.lines": []}, "claim.lines"),
            ({"claim.lines[0].line_number": 1.5}, "claim.lines.0.line_number"),
            ({"claim.lines[0].line_number": "1"}, "claim.lines.0.line_number"),
            ({"claim.lines[0].line_number": 0}, "claim.lines.0.line_number"),
            ({"claim.lines[0].units": "1"}, "claim.lines.0.units"),
            ({"claim.lines[0].units": True}, "claim.lines.0.units"),
            ({"claim.lines[0].charge": "412.001"}, "claim.lines.0.charge"),
            ({"claim.lines[0].charge": -1}, "claim.lines.0.charge"),
            ({"claim.lines[0].charge": 1.005}, "claim.lines.0.charge"),
            ({"claim.lines[0].charge": "1e2"}, "claim.lines.0.charge"),
            ({"claim.lines[0].charge": " 412.00"}, "claim.lines.0.charge"),
            ({"claim.lines[0].charge": False}, "claim.lines.0.charge"),
            ({"claim.lines[0].service_date": "2026-02-30"}, "claim.lines.0.service_date"),
            ({"claim.lines[0].service_date": "2026-11-20T00:00:00Z"}, "claim.lines.0.service_date"),
            ({"claim.lines[0].service_date": 20261120}, "claim.lines.0.service_date"),
            ({"claim.lines[0].service_date": "11/20/2026"}, "claim.lines.0.service_date"),
            ({"claim.lines[0].modifiers": DELETE}, "claim.lines.0.modifiers"),
            ({"claim.lines[0].diagnosis_pointers": [1.5]}, "claim.lines.0.diagnosis_pointers.0"),
            ({"claim.documentation.wound.area_cm2": "18.5"}, "claim.documentation.wound.area_cm2"),
            ({"claim.documentation.wound.area_cm2": True}, "claim.documentation.wound.area_cm2"),
            (
                {"claim.documentation.wound.application_number": 2.5},
                "claim.documentation.wound.application_number",
            ),
            (
                {"claim.documentation.product.lot_numbers": "A"},
                "claim.documentation.product.lot_numbers",
            ),
            ({"claim.patient": "Ada"}, "claim.patient"),
        ],
    )
    def test_a_body_that_breaks_a_type_or_shape_rule_is_a_schema_violation(
        self, patch: dict[str, object], loc: str
    ) -> None:
        rejected = _rejected(event_bytes(patched(default_event(), patch)))
        assert rejected.kind is DeadLetterKind.SCHEMA_VIOLATION
        assert loc in [detail_loc for detail_loc, _ in rejected.details]
        assert rejected.message.startswith(f"{rejected.details[0][0]}: ")

    def test_a_schema_violation_never_quotes_a_patient_value(self) -> None:
        document = canary_event(
            **{"claim.patient.birth_date": 19510309, "claim.diagnoses": ["PHICANARY-DX", 7]}
        )
        rejected = _rejected(event_bytes(document))
        text = rejected.message + repr(rejected.details)
        assert "19510309" not in text
        assert "PHICANARY" not in text
        for value in PHI_CANARIES.values():
            assert str(value) not in text


class TestContractV11:
    def test_claim_ids_with_spaces_and_hashes_as_x12_sends_them_are_accepted(self) -> None:
        document = patched(default_event(), {"claim.claim_id": "CLM #2026 000123"})

        accepted = read_claim_event(event_bytes(document), max_bytes=1024 * 1024)

        assert isinstance(accepted, Accepted)
        assert accepted.event.claim.claim_id == "CLM #2026 000123"

    def test_line_places_of_service_and_attachments_are_read_and_echoed(self) -> None:
        attachment = {"report_type": "OZ", "transmission": "FX", "control_number": "A1"}
        document = patched(
            default_event(),
            {"claim.lines[1].place_of_service": "22", "claim.attachments": [attachment]},
        )

        accepted = read_claim_event(event_bytes(document), max_bytes=1024 * 1024)

        assert isinstance(accepted, Accepted)
        assert accepted.event.claim.lines[1].place_of_service == "22"
        assert accepted.event.claim.attachments is not None
        assert accepted.event.claim.attachments[0].report_type == "OZ"
        assert accepted.claim_document["attachments"] == [attachment]
