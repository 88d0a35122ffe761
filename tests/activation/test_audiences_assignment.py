"""Control group and A/B variants: a keyed hash of (person, audience) under the project's secret.

- a person keeps their group and variant from run to run, whoever else joins or leaves;
- the holdout share and the variant weights hold within binomial tolerance;
- another secret gives other assignments (a keyed hash, never a plain one: docs/reliability.md #14).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest
from audiences_harness import (
    OTHER_SECRET,
    TEST_SECRET,
    TinyWarehouse,
    audience_spec,
    cart_rows,
    person,
    write_audience,
    write_destinations,
)

from yorisoi.activation.selection.membership import CONTROL, TREATMENT, assign, connect_warehouse, eligible_members

N = 20_000


def _within(observed: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    return abs(observed - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("assignment")
    destinations = write_destinations(folder)
    three = write_audience(
        folder / "audiences",
        audience_spec(
            "nudge_test",
            variants=[{"name": "A", "weight": 50}, {"name": "B", "weight": 30}, {"name": "C", "weight": 20}],
        ),
        destinations,
    )
    other = write_audience(folder / "audiences", audience_spec("other_test"), destinations)
    return folder, destinations, three, other


def test_holdout_share_and_variant_weights_hold(setup) -> None:
    _, _, audience, _ = setup
    ids = [f"P{i:06d}" for i in range(N)]
    frame = assign(ids, audience, TEST_SECRET)
    assert len(frame) == N and frame["person_id"].is_unique
    control = int((frame["grp"] == CONTROL).sum())
    assert _within(control, N, 0.10), f"{control} of {N} in the control group, expected about {N // 10}"
    treated = frame[frame["grp"] == TREATMENT]
    assert frame.loc[frame["grp"] == CONTROL, "variant"].isna().all()
    for name, weight in (("A", 0.5), ("B", 0.3), ("C", 0.2)):
        got = int((treated["variant"] == name).sum())
        assert _within(got, len(treated), weight), f"variant {name}: {got} of {len(treated)}, weight {weight}"
    # The variant does not depend on the group: the variants' shares are the same in both halves
    # of the hash space of the group.
    assert treated["variant"].notna().all()


def test_a_person_keeps_group_and_variant_across_runs_and_member_sets(setup) -> None:
    _, _, audience, _ = setup
    everyone = [f"P{i:06d}" for i in range(4000)]
    first = assign(everyone[:3000], audience, TEST_SECRET).set_index("person_id")
    # next run: a quarter left, a thousand joined, in another order
    second = assign(list(reversed(everyone[750:])), audience, TEST_SECRET).set_index("person_id")
    common = first.index.intersection(second.index)
    assert len(common) == 2250
    assert (first.loc[common, "grp"] == second.loc[common, "grp"]).all()
    assert first.loc[common, "variant"].fillna("-").equals(second.loc[common, "variant"].fillna("-"))


def test_another_secret_or_audience_gives_other_assignments(setup) -> None:
    _, _, audience, other_audience = setup
    ids = [f"P{i:06d}" for i in range(N)]
    mine = assign(ids, audience, TEST_SECRET).set_index("person_id")
    theirs = assign(ids, audience, OTHER_SECRET).set_index("person_id")
    both_control = int(((mine["grp"] == CONTROL) & (theirs["grp"] == CONTROL)).sum())
    # independent draws: about 1 % of people are in both control groups, not 10 %
    assert _within(both_control, N, 0.01), both_control
    same_variant = int((mine["variant"] == theirs["variant"]).sum())
    assert same_variant < 0.5 * N
    # the same secret, another audience: another split too (a person is not always held out)
    elsewhere = assign(ids, other_audience, TEST_SECRET).set_index("person_id")
    assert _within(int(((mine["grp"] == CONTROL) & (elsewhere["grp"] == CONTROL)).sum()), N, 0.01)


def test_the_split_is_not_a_plain_hash(setup) -> None:
    """Nobody without the secret can recompute the control group from person IDs."""
    _, _, audience, _ = setup
    ids = [f"P{i:06d}" for i in range(2000)]
    frame = assign(ids, audience, TEST_SECRET)
    for salt in (
        b"",
        audience.name.encode(),
        b"yorisoi.activation.assignment.v1\x1f" + audience.name.encode() + b"\x1f",
    ):
        plain = [int.from_bytes(hashlib.sha256(salt + p.encode()).digest()[:8], "big") / 2**64 < 0.1 for p in ids]
        assert list(frame["grp"] == CONTROL) != plain


def test_membership_assigns_the_same_groups_run_after_run(setup, tmp_path: Path) -> None:
    """Through the warehouse: run 1 with people 0-999, run 2 with 200-1199 and a changed consent."""
    _, _, audience, _ = setup
    wh = TinyWarehouse(tmp_path / "warehouse.duckdb")
    wh.people = [person(i) for i in range(1200)]
    wh.deliverable = {(f"P{i:05d}", "dm") for i in range(1200)}
    wh.selections = {"trigger_cart_abandonment": cart_rows(f"P{i:05d}" for i in range(1000))}
    wh.write()
    con = connect_warehouse(wh.path)
    run1 = eligible_members(audience, con, TEST_SECRET).frame.set_index("person_id")
    con.close()
    wh.selections = {"trigger_cart_abandonment": cart_rows(f"P{i:05d}" for i in range(200, 1200))}
    wh.deliverable -= {("P00500", "dm")}
    wh.write()
    con = connect_warehouse(wh.path)
    run2 = eligible_members(audience, con, TEST_SECRET).frame.set_index("person_id")
    con.close()
    assert "P00500" not in run2.index and "P00100" not in run2.index and "P01100" in run2.index
    common = run1.index.intersection(run2.index)
    assert len(common) == 799
    assert (run1.loc[common, "grp"] == run2.loc[common, "grp"]).all()
    assert run1.loc[common, "variant"].fillna("-").equals(run2.loc[common, "variant"].fillna("-"))
