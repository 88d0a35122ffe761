"""docs/reliability.md #1 at export time: an opted-out or blacklisted customer never appears in any
export, for that channel. Deliverable = eligible − suppressed, computed when the export runs; no
consent, no send.

The approach of tests/consent/test_consent_state_machine.py, one layer further: Hypothesis drives
people through add, opt-in, opt-out, re-opt-in, identity merge, late file, blacklisting, a shared
address and segment rebuilds, with an oracle of every consent event. The test writes a small
warehouse after every step the way the dbt build would leave it (marts.dim_customers,
marts.deliverable_customers from the oracle, and the selection mart, which is only rebuilt by the
`rebuild_segments` rule, so it is usually stale: it still names people who opted out or were
merged away since). After every step the activation code builds the members for export to one
destination per channel (allocation, then the records, re-checked against the warehouse), and:

- safety: no exported person is suppressed on that channel by the oracle (latest event an
  opt-out, ties counting as opt-outs; no opt-in at all; blacklisted; a staff test account), and no
  exported key (email, phone, LINE ID) is also held by a suppressed person;
- export time: an opt-out that lands between the allocation and the export is honoured;
- liveness, so the test cannot pass by exporting nobody: every person the oracle allows, who is in
  the selection under their current person ID, is exported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from audiences_harness import AS_OF, TEST_SECRET, MemoryStore, TinyWarehouse, cart_rows, write_audience
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from yorisoi.activation.selection import membership
from yorisoi.activation.selection.arbitration import arbitrate
from yorisoi.activation.selection.definitions import load_destinations
from yorisoi.activation.selection.membership import build_records, eligible_members

CHANNELS = ("email", "line", "sms", "dm")
DESTINATION_OF = {"email": "esp_list", "line": "line_audience", "sms": "sms", "dm": "sftp_dm_list"}
KEY_OF = {"email": "email", "line": "line_user_id", "sms": "phone", "dm": "person_id"}
CHANNEL = st.sampled_from(CHANNELS)

AUDIENCE = {
    "name": "everyone_everywhere",
    "owner": "tests",
    "description": "every channel at once",
    "selection": {"mart": "trigger_cart_abandonment"},
    "channels": list(CHANNELS),
    "destinations": [
        {"name": "esp_list", "columns": ["full_name", "variant"]},
        {"name": "line_audience", "columns": []},
        {"name": "sms", "columns": ["variant"], "templates": {"default": "hello"}},
        {"name": "sftp_dm_list", "columns": ["full_name", "postal_code", "address", "variant"]},
    ],
    "priority": 1,
    "holdout_percent": 0,
    "columns": ["full_name", "postal_code", "address", "variant"],
}


@dataclass
class Person:
    idx: int
    events: dict[str, list[tuple[int, str]]] = field(default_factory=lambda: {c: [] for c in CHANNELS})
    merged_into: int | None = None
    blacklisted: bool = False
    test_account: bool = False
    email_of: int | None = None  # shares the email address of another person (a family)

    def allowed(self, channel: str) -> bool:
        events = self.events[channel]
        if self.blacklisted or self.test_account or not any(a == "opt_in" for _, a in events):
            return False
        last = max(t for t, _ in events)
        return not any(a == "opt_out" for t, a in events if t == last)  # an opt-out wins a tie


class World:
    """People (with merges: a person absorbed into an older one keeps its events there), the
    warehouse the test writes from them, and the stale selection."""

    def __init__(self, wh: TinyWarehouse) -> None:
        self.wh = wh
        self.people: list[Person] = []
        self.clock = 0
        self.selection: list[str] = []  # person IDs as of the last segment rebuild
        self.stale_deliverable: set[str] = set()  # blacklisted since the last consent rebuild

    def tick(self) -> int:
        self.clock += 10
        return self.clock

    def root(self, idx: int) -> Person:
        p = self.people[idx]
        while p.merged_into is not None:
            p = self.people[p.merged_into]
        return p

    @staticmethod
    def pid(p: Person) -> str:
        return f"P{p.idx:05d}"

    def current(self) -> list[Person]:
        return [p for p in self.people if p.merged_into is None]

    def events(self, root: Person, channel: str) -> list[tuple[int, str]]:
        absorbed = [p for p in self.people if p.merged_into is not None and self.root(p.idx) is root]
        return [e for p in (root, *absorbed) for e in p.events[channel]]

    def allowed(self, root: Person, channel: str) -> bool:
        absorbed = [p for p in self.people if p.merged_into is not None and self.root(p.idx) is root]
        merged = Person(root.idx, {c: self.events(root, c) for c in CHANNELS})
        merged.blacklisted = root.blacklisted or any(p.blacklisted for p in absorbed)
        merged.test_account = root.test_account
        return merged.allowed(channel)

    def keys(self, root: Person) -> dict[str, str]:
        email_owner = root.email_of if root.email_of is not None else root.idx
        return {
            "email": f"p{email_owner:05d}@example.jp",
            "line": f"U{root.idx:032d}",
            "sms": f"+8190{root.idx:08d}",
            "dm": self.pid(root),
        }

    def write(self) -> None:
        rows = []
        for p in self.current():
            k = self.keys(p)
            rows.append(
                {
                    "person_id": self.pid(p),
                    "full_name": f"顧客{p.idx}",
                    "name_kana": "コキャク",
                    "email": k["email"],
                    "phone": k["sms"],
                    "postal_code": "1500041",
                    "prefecture": "東京都",
                    "address": f"渋谷区{p.idx}",
                    "line_user_id": k["line"],
                    "is_test_account": p.test_account,
                    "is_blacklisted": p.blacklisted,
                    "is_erased": False,
                }
            )
        self.wh.people = rows
        deliverable = {(self.pid(p), c) for p in self.current() for c in CHANNELS if self.allowed(p, c)}
        # A blacklisting that the consent marts have not caught up with yet: the golden record's
        # flag already says so.
        deliverable |= {(pid, c) for pid in self.stale_deliverable for c in CHANNELS}
        self.wh.deliverable = deliverable
        self.wh.selections = {"trigger_cart_abandonment": cart_rows(self.selection)}
        self.wh.write()


@dataclass
class Stats:
    steps: int = 0
    exported: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHANNELS, 0))
    suppressed_in_selection: int = 0
    late_opt_outs: int = 0


class ExportMachine(RuleBasedStateMachine):
    folder: Path
    stats: Stats
    people = Bundle("people")

    def __init__(self) -> None:
        super().__init__()
        self.destinations = load_destinations()
        self.audience = write_audience(self.folder / "audiences", AUDIENCE, self.destinations)
        self.world = World(TinyWarehouse.in_memory())

    @initialize()
    def empty(self) -> None:
        self.world.write()

    # ---- people and consent ------------------------------------------------------------------

    @rule(
        target=people,
        opt_ins=st.lists(CHANNEL, min_size=1, max_size=4, unique=True),
        how=st.fixed_dictionaries({"test_account": st.integers(0, 9), "segments_rebuilt": st.booleans()}),
    )
    def add(self, opt_ins, how) -> int:
        """A new customer with consent on some channels (none on the others); maybe the segment
        build runs right after."""
        w = self.world
        p = Person(len(w.people), test_account=how["test_account"] == 0)
        at = w.tick()
        for c in opt_ins:
            p.events[c].append((at, "opt_in"))
        w.people.append(p)
        if how["segments_rebuilt"]:
            self.rebuild_segments()
        return p.idx

    @rule(person=people, channel=CHANNEL)
    def opt_in(self, person, channel) -> None:
        self.world.root(person).events[channel].append((self.world.tick(), "opt_in"))

    @rule(person=people, channel=CHANNEL)
    def opt_out(self, person, channel) -> None:
        self.world.root(person).events[channel].append((self.world.tick(), "opt_out"))

    @rule(person=people, channel=CHANNEL, same_instant=st.booleans())
    def re_opt_in(self, person, channel, same_instant) -> None:
        """An opt-out then an opt-in; at the same instant the opt-out still wins."""
        p, w = self.world.root(person), self.world
        at = w.tick()
        p.events[channel].append((at, "opt_out"))
        p.events[channel].append((at if same_instant else w.tick(), "opt_in"))

    @rule(person=people, channel=CHANNEL, action=st.sampled_from(["opt_in", "opt_out"]), back=st.integers(1, 25))
    def late_file(self, person, channel, action, back) -> None:
        """A file arriving now with an event older than the person's latest on the channel."""
        p = self.world.root(person)
        events = self.world.events(p, channel)
        if not events:
            return
        latest = max(t for t, _ in events)
        p.events[channel].append((max(latest - back, 0), action))

    @rule(a=people, b=people)
    def identity_merge(self, a, b) -> None:
        """Two people turn out to be one: the younger is absorbed into the older (the stale
        selection may still name the absorbed ID)."""
        w = self.world
        ra, rb = w.root(a), w.root(b)
        if ra is rb:
            return
        older, younger = (ra, rb) if ra.idx < rb.idx else (rb, ra)
        younger.merged_into = older.idx

    @rule(person=people, caught_up=st.booleans())
    def blacklist(self, person, caught_up) -> None:
        """The OMS blacklists the customer; `caught_up=False`: deliverable_customers still lists
        them (only the golden record's flag says so yet)."""
        p = self.world.root(person)
        p.blacklisted = True
        if not caught_up:
            self.world.stale_deliverable.add(self.world.pid(p))

    @rule(a=people, b=people)
    def share_email(self, a, b) -> None:
        """Two people (a family) hold the same email address."""
        ra, rb = self.world.root(a), self.world.root(b)
        if ra is not rb:
            rb.email_of = ra.email_of if ra.email_of is not None else ra.idx

    @rule()
    def rebuild_segments(self) -> None:
        """The segment build: the selection lists every current person again."""
        self.world.selection = [self.world.pid(p) for p in self.world.current()]
        self.world.stale_deliverable.clear()

    @rule(person=people, channel=CHANNEL)
    def opt_out_during_export(self, person, channel) -> None:
        """Allocated first, then the person opts out and the warehouse is rebuilt, then the
        records are built from the earlier allocation: the opt-out must hold."""
        w = self.world
        w.write()
        allocation = self._allocate()
        p = w.root(person)
        p.events[channel].append((w.tick(), "opt_out"))
        w.write()
        exported = self._export(allocation)
        assert w.pid(p) not in {r.person_id for r in exported[channel]}, "an opt-out between allocation and export"
        self.stats.late_opt_outs += 1

    # ---- the export --------------------------------------------------------------------------

    def _allocate(self):
        con = self.world.wh.connect()
        try:
            members = eligible_members(self.audience, con, TEST_SECRET)
            return arbitrate([(self.audience, members)], store=MemoryStore(), as_of=AS_OF, default_caps={}, con=con)
        finally:
            con.close()

    def _export(self, allocation) -> dict[str, list]:
        con = self.world.wh.connect()
        try:
            return {
                c: build_records(
                    self.audience,
                    self.destinations[DESTINATION_OF[c]],
                    allocation.person_ids(self.audience.name, c),
                    con,
                    variants=allocation.variants(self.audience.name),
                    secret=TEST_SECRET,
                ).records
                for c in CHANNELS
            }
        finally:
            con.close()

    @invariant()
    def exports_never_hold_a_suppressed_person(self) -> None:
        w = self.world
        self.stats.steps += 1
        w.write()
        exported = self._export(self._allocate())
        by_pid = {w.pid(p): p for p in w.current()}
        selected = set(w.selection)
        problems = []
        for channel, records in exported.items():
            suppressed_keys = {w.keys(p)[channel] for p in w.current() if not w.allowed(p, channel)}
            for r in records:
                p = by_pid.get(r.person_id)
                if p is None or not w.allowed(p, channel):
                    problems.append(f"{channel}: exported {r.person_id}, whom the oracle suppresses")
                if r.key in suppressed_keys:
                    problems.append(f"{channel}: exported key {r.key}, which a suppressed person also holds")
                if r.key != w.keys(p)[channel] if p else False:
                    problems.append(f"{channel}: {r.person_id} exported under key {r.key}")
            # liveness: everyone allowed, selected under their current ID, and not sharing a
            # suppressed key is exported
            got = {r.person_id for r in records}
            for pid, p in by_pid.items():
                if pid in selected and w.allowed(p, channel) and w.keys(p)[channel] not in suppressed_keys:
                    shared = [q for q in w.current() if q is not p and w.keys(q)[channel] == w.keys(p)[channel]]
                    if pid not in got and not any(w.pid(q) < pid for q in shared):
                        problems.append(f"{channel}: {pid} may be contacted and is selected, yet not exported")
            self.stats.exported[channel] += len(records)
            self.stats.suppressed_in_selection += sum(
                1 for pid in selected if pid in by_pid and not w.allowed(by_pid[pid], channel)
            )
        assert not problems, "reliability #1 violated at export:\n" + "\n".join(problems[:20])


def run_machine(folder: Path, cfg: settings) -> Stats:
    stats = Stats()
    machine = type("Machine", (ExportMachine,), {"folder": folder, "stats": stats})
    run_state_machine_as_test(machine, settings=cfg)
    return stats


def _settings(**kw) -> settings:
    return settings(
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        **kw,
    )


def test_no_suppressed_customer_is_ever_exported(tmp_path: Path) -> None:
    stats = run_machine(tmp_path, _settings(max_examples=15, stateful_step_count=15))
    print(stats)
    assert all(stats.exported.values()), f"some channel never exported anyone: {stats.exported}"
    assert stats.suppressed_in_selection > 0, "the selection never held a suppressed person: the test proved nothing"


@pytest.mark.slow
def test_no_suppressed_customer_is_ever_exported_long(tmp_path: Path) -> None:
    stats = run_machine(tmp_path, _settings(max_examples=100, stateful_step_count=30))
    print(stats)
    assert all(stats.exported.values())


# ---- the invariant fails on membership code that ignores consent -------------------------------


def _everyone_deliverable(monkeypatch) -> None:
    """Break membership: consent read from a table listing every person on every channel, as if
    deliverable_customers were skipped."""
    original = TinyWarehouse.write

    def write(self) -> None:
        original(self)
        con = self.connect()
        try:
            con.execute(
                "create or replace table marts.everyone as select person_id, channel from marts.dim_customers, "
                "(values ('email'), ('line'), ('sms'), ('dm')) as c(channel)"
            )
            con.execute(
                "create or replace table marts.no_suppressed_keys as from marts.suppressed_contact_keys limit 0"
            )
        finally:
            con.close()

    monkeypatch.setattr(TinyWarehouse, "write", write)
    monkeypatch.setattr(membership, "DELIVERABLE", "marts.everyone")
    # and no key held by a suppressed record is checked either (docs/reliability.md #16)
    no_keys = "select null::varchar as contact_key where false"
    monkeypatch.setattr(membership, "held_keys_sql", lambda con, channel: no_keys)


def _machine(tmp_path: Path) -> ExportMachine:
    machine = type("Machine", (ExportMachine,), {"folder": tmp_path, "stats": Stats()})()
    machine.empty()
    return machine


def test_the_invariant_catches_membership_that_skips_deliverable_customers(tmp_path: Path, monkeypatch) -> None:
    _everyone_deliverable(monkeypatch)
    m = _machine(tmp_path)
    p = m.add(opt_ins=["line"], how={"test_account": 5, "segments_rebuilt": True})
    m.opt_out(p, "line")
    with pytest.raises(AssertionError, match=r"reliability #1 violated at export:\n.*exported P00000, whom the oracle"):
        m.exports_never_hold_a_suppressed_person()


def test_the_search_finds_membership_that_skips_deliverable_customers(tmp_path: Path, monkeypatch) -> None:
    """The same, found by the state machine's own search (derandomised, no shrinking)."""
    _everyone_deliverable(monkeypatch)
    cfg = _settings(max_examples=50, stateful_step_count=6, derandomize=True, phases=[Phase.generate])
    with pytest.raises(AssertionError, match="reliability #1 violated"):
        run_machine(tmp_path, cfg)


def test_the_invariant_catches_membership_that_ignores_the_blacklist_flag(tmp_path: Path, monkeypatch) -> None:
    """deliverable_customers has not caught up with a blacklisting yet; the golden record's flag
    has. Membership blind to that flag exports the person."""

    class FlagBlind:
        def __init__(self, con) -> None:
            self._con = con

        def execute(self, sql, *args, **kwargs):
            return self._con.execute(sql.replace("coalesce(is_blacklisted, false)", "false"), *args, **kwargs)

        def __getattr__(self, name):
            return getattr(self._con, name)

    original = TinyWarehouse.connect
    monkeypatch.setattr(TinyWarehouse, "connect", lambda self: FlagBlind(original(self)))
    m = _machine(tmp_path)
    p = m.add(opt_ins=["dm"], how={"test_account": 5, "segments_rebuilt": True})
    m.exports_never_hold_a_suppressed_person()  # fine before
    m.blacklist(p, caught_up=False)
    with pytest.raises(AssertionError, match="dm: exported P00000, whom the oracle suppresses"):
        m.exports_never_hold_a_suppressed_person()


def test_the_invariant_catches_an_export_that_trusts_the_allocation(tmp_path: Path, monkeypatch) -> None:
    """Records built from the allocation without re-reading deliverable_customers at export time
    (and without the suppressed records' contact keys, which would also hold the person back)
    let an opt-out that landed in between through."""
    import test_consent_at_export as this

    real = membership.build_records

    def stale_build(*args, **kwargs):
        with monkeypatch.context() as patch:
            patch.setattr(membership, "DELIVERABLE", "marts.everyone")
            patch.setattr(membership, "SUPPRESSED_KEYS", "marts.no_suppressed_keys")
            return real(*args, **kwargs)

    original = TinyWarehouse.write

    def write(self) -> None:
        original(self)
        con = self.connect()
        try:
            con.execute(
                "create or replace table marts.everyone as select person_id, channel from marts.dim_customers, "
                "(values ('email'), ('line'), ('sms'), ('dm')) as c(channel)"
            )
            con.execute(
                "create or replace table marts.no_suppressed_keys as from marts.suppressed_contact_keys limit 0"
            )
        finally:
            con.close()

    monkeypatch.setattr(TinyWarehouse, "write", write)
    monkeypatch.setattr(this, "build_records", stale_build)
    m = _machine(tmp_path)
    p = m.add(opt_ins=["email"], how={"test_account": 5, "segments_rebuilt": True})
    with pytest.raises(AssertionError, match="an opt-out between allocation and export"):
        m.opt_out_during_export(p, "email")


# ---- the same rules, pinned cheaply ----------------------------------------------------------------


def _plain_world(tmp_path: Path):
    m = _machine(tmp_path)
    people = [m.add(opt_ins=list(CHANNELS), how={"test_account": 5, "segments_rebuilt": True}) for _ in range(6)]
    m.world.write()
    return m, people


@pytest.mark.parametrize("channel", CHANNELS)
def test_records_are_rechecked_against_deliverable_customers_at_export_time(tmp_path: Path, channel: str) -> None:
    """Allocated while deliverable; opted out before the export: left out, whatever the key."""
    m, people = _plain_world(tmp_path)
    allocation = m._allocate()
    assert len(allocation.person_ids(m.audience.name, channel)) == 6
    m.world.root(people[2]).events[channel].append((m.world.tick(), "opt_out"))
    m.world.write()
    con = m.world.wh.connect()
    try:
        result = build_records(
            m.audience,
            m.destinations[DESTINATION_OF[channel]],
            allocation.person_ids(m.audience.name, channel),
            con,
            secret=TEST_SECRET,
        )
    finally:
        con.close()
    assert "P00002" not in {r.person_id for r in result.records}
    assert len(result.records) == 5
    assert result.dropped.get("not_deliverable_now") == 1


def test_a_key_shared_with_a_suppressed_person_is_not_exported(tmp_path: Path) -> None:
    """A family address: P1 opted out of email, P0 (same address) did not. Nothing goes to that
    address; P0's other channels are unaffected."""
    m, people = _plain_world(tmp_path)
    m.share_email(people[0], people[1])
    m.world.root(people[1]).events["email"].append((m.world.tick(), "opt_out"))
    m.world.write()
    exported = m._export(m._allocate())
    emails = {r.key for r in exported["email"]}
    assert "p00000@example.jp" not in emails and len(emails) == 4
    assert "P00000" in {r.person_id for r in exported["dm"]}
    m.exports_never_hold_a_suppressed_person()
