"""The export guard against contact data under another column name (docs/reliability.md #14)
refuses phone numbers and email addresses, and lets postcodes through: Hokkaido's start with 0
(060-0001), which an earlier pattern read as a phone number and so refused DM exports."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from yorisoi.activation.delivery.destinations.base import Record
from yorisoi.activation.selection.membership import PHONE_RE, MembershipError, scan_for_contact_data

PHONES = ["090-1234-5678", "09012345678", "03-1234-5678", "0312345678", "0120-123-456", "+819012345678"]
NOT_PHONES = ["0600001", "060-0001", "1500001", "150-0001", "札幌市中央区北1条西2丁目", "2026-10-31", "1-2-3"]


@pytest.mark.parametrize("value", PHONES)
def test_a_phone_number_in_any_column_refuses_the_export(value: str) -> None:
    with pytest.raises(MembershipError, match="holds a phone number"):
        scan_for_contact_data([Record("P1", "P1", {"memo": f"TEL {value}"})], "dm_csv", allowed=[])


@pytest.mark.parametrize("value", NOT_PHONES)
def test_postcodes_dates_and_addresses_pass(value: str) -> None:
    scan_for_contact_data([Record("P1", "P1", {"postal_code": value})], "dm_csv", allowed=[])


def test_the_arrow_scan_reads_the_pattern_as_python_does() -> None:
    """Exports scan whole columns with RE2 (pyarrow): the same answers as Python's re."""
    values = pa.array(PHONES + NOT_PHONES)
    hits = pc.match_substring_regex(values, PHONE_RE.pattern).to_pylist()
    assert hits == [bool(PHONE_RE.search(v)) for v in PHONES + NOT_PHONES] == [True] * 6 + [False] * 7
