"""docs/reliability.md #1, as a state machine: an opted-out or blacklisted customer never
appears in any export, for that channel. Deliverable = eligible − suppressed; missing consent
means excluded (no consent, no send).

Hypothesis drives the source systems (shop accounts, the OMS customer master, store member
cards, LINE, the email provider, call-centre files) through customers, opt-ins, opt-outs (also
undated ones, and email-provider unsubscribes that name only the address), re-opt-ins, an
opt-in and an opt-out at the same instant, identity merges, late files, blacklisting (and its
lifting) and erasure, in random orders. After every step the consent models are replayed
(consent_harness.Warehouse.rebuild) and compared with an oracle that knows every consent event
of every person:

- safety: a person the oracle says is suppressed on a channel (latest event an opt-out, ties
  counting as opt-outs; no opt-in at all; blacklisted; erased; a staff test account) has no
  person_id holding any of their records in marts.deliverable_customers for that channel;
- identity: the records of one person share one person_id, and people do not share one;
- liveness, so the test cannot pass by suppressing everyone: a person whose latest email or SMS
  event is a shop 'subscribed', or whose latest LINE event is a follow (alone at that instant,
  nothing else excluding them, no undated withdrawal on that channel), is deliverable on it.

The oracle dates events when they happen. The models date OMS flags conservatively (a
permission from the record's registration, a refusal from its last update) and an undated
withdrawal when its record was last updated: that can only suppress more, so it never breaks
the safety check, and the liveness check leaves those cases out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest
from consent_harness import (
    CHANNELS,
    TEST_MATCH_KEY,
    CompiledProject,
    Person,
    Warehouse,
    World,
    describe_events,
    identity_problems,
    late_time,
    violations,
)
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from yorisoi.activation.selection import sendtime
from yorisoi.activation.selection.membership import suppressed_now

LIVE_SOURCES = {"email": "shop", "sms": "shop", "line": "line"}  # sources the models date exactly
REQUEST_BY = st.sampled_from(["email", "code", "phone", "all"])  # how a call-centre caller is identified
CHANNEL = st.sampled_from(CHANNELS)
VIA = st.integers(0, 11)  # picks the system / record / account a change goes through
MAX_SHOP_ACCOUNTS, MAX_OMS_RECORDS = 2, 2  # + a LINE user and a member card: 6 records at most,
# of which 5 share the email: within vars.identity.max_group_size (6)


@dataclass
class RunStats:
    examples: int = 0
    steps: int = 0
    liveness_checks: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LIVE_SOURCES, 0))
    suppressed_checks: int = 0
    late_saves: int = 0  # person-channels the marts still allowed, held back by the send-time check
    rules: dict[str, int] = field(default_factory=dict)

    def rule(self, name: str) -> None:
        self.steps += 1
        self.rules[name] = self.rules.get(name, 0) + 1


class ConsentMachine(RuleBasedStateMachine):
    """Subclassed per test with a warehouse (`wh`) and a stats object (`stats`).

    Hypothesis orders rules by number of arguments and draws the first ones more often, so the
    consent changes take their parameters as one dictionary (two arguments) and the rarer
    blacklist, erase and merge rules take three."""

    wh: Warehouse
    stats: RunStats
    check_liveness = True

    people = Bundle("people")

    def __init__(self) -> None:
        super().__init__()
        self.world = World(self.wh)

    @initialize()
    def fresh_systems(self) -> None:
        self.wh.reset()
        self.stats.examples += 1

    def person(self, idx: int) -> Person:
        return self.world.people[idx]

    # ---- customers and identity ---------------------------------------------------------------

    @rule(
        target=people,
        email_state=st.sampled_from(["not_subscribed", "subscribed", "unsubscribed"]),
        sms_state=st.sampled_from(["not_subscribed", "subscribed", "unsubscribed"]),
        oms=st.none() | st.fixed_dictionaries({"dm_permission": st.booleans(), "call_permission": st.booleans()}),
        line_follow=st.none() | st.booleans(),
        test_account=st.integers(0, 7).map(lambda n: n == 0),  # a staff test account, now and then
    )
    def add_customer(self, email_state, sms_state, oms, line_follow, test_account) -> int:
        """A shop account, maybe an OMS customer record, maybe a LINE friend who linked the account."""
        self.stats.rule("add_customer")
        w = self.world
        person = w.add_person(test_account=test_account)
        w.add_shop_account(person, email_state=email_state, sms_state=sms_state)
        if oms is not None:
            w.add_oms_customer(person, **oms)
        if line_follow is not None:
            w.add_line_user(person, follow=line_follow)
        return person.idx

    @rule(
        person=people,
        kind=st.sampled_from(["oms", "shop", "line", "pos"]),
        flags=st.lists(st.booleans(), min_size=3, max_size=3),
    )
    def identity_merge(self, person, kind, flags) -> None:
        """A second record of an existing person (same email, name and phone, typed differently),
        which must merge: events on either record then count for the person."""
        self.stats.rule("identity_merge")
        w, p = self.world, self.person(person)
        can = {
            "oms": len(p.oms_codes) < MAX_OMS_RECORDS,
            "shop": len(p.shop_ids) < MAX_SHOP_ACCOUNTS,
            "line": not p.line_user_ids,
            "pos": not p.pos_cards,
        }
        kind = kind if can[kind] else next((k for k, ok in can.items() if ok), None)
        if kind == "oms":
            w.add_oms_customer(p, email_permission=flags[0], dm_permission=flags[1], call_permission=flags[2])
        elif kind == "shop":
            states = ["subscribed" if f else "not_subscribed" for f in flags]
            w.add_shop_account(p, email_state=states[0], sms_state=states[1])
        elif kind == "line":
            w.add_line_user(p, follow=flags[0])
        elif kind == "pos":
            w.add_pos_member(p)

    # ---- consent --------------------------------------------------------------------------------

    def _opt_in(self, p: Person, channel: str, via: int) -> None:
        w = self.world
        if channel in ("email", "sms"):
            if channel == "email" and via % 4 == 3 and p.oms_codes:
                w.oms_update(p, email_permission=True)  # dated at registration by the models
            else:
                w.shop_marketing(p, channel, "subscribed", account=via)
        elif channel == "line":
            if p.line_user_ids:
                w.line_event(p, follow=True)
            else:
                w.add_line_user(p, follow=True)
        elif p.oms_codes:
            w.oms_update(p, code_index=via, **{f"{channel}_permission": True})
        else:
            w.add_oms_customer(p, **{f"{channel}_permission": True})

    def _opt_out(self, p: Person, channel: str, via: int, by: str) -> None:
        w = self.world
        methods = {
            "email": ["shop", "esp", "callcenter", "callcenter_all", "shop_undated", "esp_by_email"],
            "sms": ["shop", "callcenter", "shop_undated"],
            "line": ["unfollow", "unfollow", "callcenter_all"],
            "dm": ["oms", "callcenter"],
            "call": ["oms", "callcenter"],
        }[channel]
        method = methods[via % len(methods)]
        if method == "oms" and not p.oms_codes:
            method = "callcenter"
        if method in ("shop", "shop_undated"):
            w.shop_marketing(p, channel, "unsubscribed", account=via, dated=method == "shop")
        elif method in ("esp", "esp_by_email"):
            w.esp_unsubscribe(p, account=via, by_email_only=method == "esp_by_email")
        elif method == "unfollow":
            if p.line_user_ids:
                w.line_event(p, follow=False)
            else:
                w.add_line_user(p, follow=False)
        elif method == "oms":
            w.oms_update(p, code_index=via, **{f"{channel}_permission": False})
        elif method == "callcenter_all":
            w.callcenter_request(p, "配信停止", "all", by=by)
        else:
            request_type = {"email": "配信停止", "sms": "配信停止", "dm": "発送停止", "call": "架電停止"}[channel]
            w.callcenter_request(p, request_type, channel, by=by)

    @rule(person=people, change=st.fixed_dictionaries({"channel": CHANNEL, "via": VIA}))
    def opt_in(self, person, change) -> None:
        """Consent given on the channel's own system (shop, LINE follow, OMS flag)."""
        self.stats.rule("opt_in")
        self._opt_in(self.person(person), change["channel"], change["via"])

    @rule(person=people, change=st.fixed_dictionaries({"channel": CHANNEL, "via": VIA, "by": REQUEST_BY}))
    def opt_out(self, person, change) -> None:
        """Consent withdrawn: shop, email provider, LINE block, OMS flag or a call-centre request."""
        self.stats.rule("opt_out")
        self._opt_out(self.person(person), change["channel"], change["via"], change["by"])

    @rule(
        person=people,
        change=st.fixed_dictionaries({"channel": CHANNEL, "out_via": VIA, "in_via": VIA, "by": REQUEST_BY}),
    )
    def re_opt_in(self, person, change) -> None:
        """An opt-in after an opt-out (the opt-out is made first when the person has none)."""
        self.stats.rule("re_opt_in")
        p, channel = self.person(person), change["channel"]
        latest = p.latest(channel)
        if latest is None or latest[0] != "opt_out":
            self._opt_out(p, channel, change["out_via"], change["by"])
        self._opt_in(p, channel, change["in_via"])

    @rule(person=people, channel=st.sampled_from(["email", "sms"]), how=st.tuples(VIA, REQUEST_BY))
    def simultaneous_opt_in_and_out(self, person, channel, how) -> None:
        """A shop 'subscribed' and an opt-out elsewhere at the same instant: the opt-out wins."""
        self.stats.rule("simultaneous_opt_in_and_out")
        w, p = self.world, self.person(person)
        via, by = how
        at = w.now()
        w.shop_marketing(p, channel, "subscribed", account=via, at=at)
        if channel == "email" and via % 2 == 0:
            w.esp_unsubscribe(p, account=via + 1, at=at)
        else:
            w.callcenter_request(p, "配信停止", channel, by=by, at=at)

    @rule(
        person=people,
        file=st.fixed_dictionaries(
            {
                "kind": st.sampled_from(["line_follow", "line_follow", "line_unfollow", "callcenter", "esp"]),
                "channel": CHANNEL,
                "hours_back": st.integers(0, 30),
                "by": REQUEST_BY,
            }
        ),
    )
    def late_file(self, person, file) -> None:
        """A file that arrives now with an event older than the person's latest event on the
        channel (an old LINE export, an old call-centre or email-provider file)."""
        self.stats.rule("late_file")
        w, p = self.world, self.person(person)
        kind, channel, hours_back, by = file["kind"], file["channel"], file["hours_back"], file["by"]
        if kind.startswith("line"):
            channel = "line"
        elif kind == "esp":
            channel = "email"
        latest = p.latest(channel)
        if latest is None or (kind.startswith("line") and not p.line_user_ids):
            return  # nothing to be late against
        at = late_time(latest[1][0].at, hours_back)
        if kind.startswith("line"):
            w.line_event(p, follow=kind == "line_follow", at=at)
        elif kind == "esp":
            w.esp_unsubscribe(p, at=at)
        else:
            request_type = {
                "email": "配信停止",
                "sms": "配信停止",
                "line": "配信停止",
                "dm": "発送停止",
                "call": "架電停止",
            }
            w.callcenter_request(p, request_type[channel], "all" if channel == "line" else channel, by=by, at=at)

    @rule(person=people, via=VIA, reason=st.sampled_from(["未払い", "悪質なクレーム", "転売目的", "lifted"]))
    def blacklist(self, person, via, reason) -> None:
        """The OMS marks the customer as blacklisted (a new OMS record if they had none), or
        lifts a blacklisting ("lifted")."""
        self.stats.rule("blacklist")
        w, p = self.world, self.person(person)
        if reason == "lifted":
            if p.oms_codes:
                w.oms_update(p, code_index=via, blacklisted=False)
        elif p.oms_codes:
            w.oms_update(p, code_index=via, blacklisted=True, blacklist_reason=reason)
        else:
            w.add_oms_customer(p, blacklisted=True)

    @rule(person=people, by=REQUEST_BY, written_channel=st.sampled_from(["all", "all", "email", "dm"]))
    def erase(self, person, by, written_channel) -> None:
        """A call-centre erasure request (削除依頼): every channel, for good, whatever channel the
        operator wrote in 対象チャネル."""
        self.stats.rule("erase")
        self.world.callcenter_request(self.person(person), "削除依頼", written_channel, by=by)

    # ---- after every step ----------------------------------------------------------------------

    @invariant()
    def suppressed_people_are_never_deliverable(self) -> None:
        self.check_now()

    def check_now(self) -> None:
        w = self.world
        if not w.people:
            return
        self.wh.rebuild()
        obs = w.observed()
        problems = violations(w, obs) + identity_problems(w, obs)
        assert not problems, "reliability #1 violated:\n" + "\n".join(problems)
        self.stats.suppressed_checks += sum(bool(p.suppression_reasons(c)) for p in w.people for c in CHANNELS)
        if not self.check_liveness:
            return
        for p in w.people:
            for channel, source in LIVE_SOURCES.items():
                latest = p.latest(channel)
                if p.blacklisted or p.erased or p.test_account or latest is None:
                    continue
                if not all(e.dated for e in p.events[channel]):
                    continue  # the models date an undated withdrawal when last seen: later, on purpose
                action, at_last = latest
                if action == "opt_in" and len(at_last) == 1 and at_last[0].source == source:
                    ids = obs.person_ids(p)
                    assert ids and ids <= obs.deliverable[channel], (
                        f"liveness: person {p.idx}'s latest {channel} event is an opt-in via {source}, "
                        f"yet {sorted(ids)} is not deliverable on {channel}"
                    )
                    self.stats.liveness_checks[channel] += 1


class TimedConsentMachine(ConsentMachine):
    """docs/reliability.md #16: the same source systems, with time between the build and the
    send. The consent marts are rebuilt only by the `build` rule; every other change lands in
    raw after the last build. After every step the export's own last guard, the engine's
    suppression check (membership.suppression_check: the marts of the last build, the contact
    keys suppressed records hold, and the send-time check of what landed since), says who would
    still be sent to on each channel; nobody the oracle suppresses on a channel (latest landed
    event an opt-out, blacklisted, erased...) may be among them."""

    def __init__(self) -> None:
        super().__init__()
        self.built = False

    @initialize(target=ConsentMachine.people)
    def fresh_systems(self) -> int:
        """Empty systems, then one customer deliverable on every channel and a build: every
        later change to them lands after the build until the next one."""
        self.wh.reset()
        self.stats.examples += 1
        w = self.world
        person = w.add_person()
        w.add_shop_account(person, email_state="subscribed", sms_state="subscribed")
        w.add_oms_customer(person, dm_permission=True, call_permission=True)
        w.add_line_user(person, follow=True)
        self.build()
        return person.idx

    @rule()
    def build(self) -> None:
        """The customer layer's build runs (it reads every row landed so far)."""
        self.stats.rule("build")
        self.wh.rebuild()
        self.built = True

    def check_now(self) -> None:
        w = self.world
        if not self.built or not w.people:
            return  # nothing was ever built: no consent mart, nothing can be sent
        obs = w.observed()  # the marts as the last build left them
        con = _connector(self.wh)()
        try:
            late = sendtime.check(con, TEST_MATCH_KEY.encode())
            held = {c: suppressed_now(con, c, obs.deliverable[c], late.people_on(c), late.keys_on(c)) for c in CHANNELS}
        finally:
            con.close()
        for channel in CHANNELS:
            marts_say = obs.deliverable[channel]
            now = marts_say - held[channel]
            for p in w.people:
                reasons = p.suppression_reasons(channel)
                if not reasons:
                    continue
                ids = obs.person_ids(p)
                leaked = sorted(ids & now)
                assert not leaked, (
                    f"reliability #16 violated: person {p.idx} would be sent {channel} as {leaked} although "
                    f"{reasons} (landed after the build); events: {describe_events(p, channel)}"
                )
                self.stats.late_saves += len(ids & marts_say)


def _connector(wh: Warehouse):
    def connect(*_args, **_kwargs):
        cursor = wh.con.cursor()
        cursor.execute(f'use "{wh.catalog}"')
        return cursor

    return connect


def run_machine(
    wh: Warehouse,
    cfg: settings,
    *,
    check_liveness: bool = True,
    stats: RunStats | None = None,
    base: type[ConsentMachine] = ConsentMachine,
) -> RunStats:
    stats = stats or RunStats()
    machine = type("Machine", (base,), {"wh": wh, "stats": stats, "check_liveness": check_liveness})
    run_state_machine_as_test(machine, settings=cfg)
    return stats


def _settings(**kw) -> settings:
    return settings(
        deadline=None,
        database=None,  # nothing written outside the test's temporary folders
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        **kw,
    )


def _report(name: str, stats: RunStats, wh: Warehouse, seconds: float) -> str:
    times = sorted(wh.rebuild_seconds)
    mean = sum(times) / len(times)
    p95 = times[int(0.95 * (len(times) - 1))]
    return (
        f"{name}: {stats.examples} examples, {stats.steps} steps, {len(times)} rebuilds "
        f"(mean {mean * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms), {seconds:.1f} s; "
        f"liveness checks {stats.liveness_checks}, suppressed person-channels checked {stats.suppressed_checks}; "
        f"rules {dict(sorted(stats.rules.items()))}"
    )


def test_no_suppressed_customer_is_ever_deliverable(session_warehouse: Warehouse) -> None:
    session_warehouse.rebuild_seconds.clear()
    started = time.perf_counter()
    stats = run_machine(session_warehouse, _settings(max_examples=15, stateful_step_count=15))
    print(_report("state machine", stats, session_warehouse, time.perf_counter() - started))
    assert all(stats.liveness_checks.values()), f"the liveness check never ran on some channel: {stats.liveness_checks}"


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_no_suppressed_customer_is_ever_deliverable_long(session_warehouse: Warehouse) -> None:
    session_warehouse.rebuild_seconds.clear()
    started = time.perf_counter()
    stats = run_machine(session_warehouse, _settings(max_examples=60, stateful_step_count=25))
    print(_report("state machine (slow)", stats, session_warehouse, time.perf_counter() - started))
    assert all(stats.liveness_checks.values()), f"the liveness check never ran on some channel: {stats.liveness_checks}"


# name -> (model, how to break its compiled SQL, which check must catch it). The search for the
# last two takes up to a few hundred steps (a tie, or a late file, must be drawn), so they run
# with the slow tests; test_consent_scenarios pins those two rules cheaply.
BROKEN_MODELS = {
    "deliverable_customers ignores deliverable_exclusions": (
        "deliverable_customers",
        lambda sql: sql.replace("and exclusions.person_id is null", ""),
        "safety",
    ),
    "consent_ledger lets an opt-in win a tie": (
        "consent_ledger",
        lambda sql: sql.replace(
            "case events.action when 'opt_out' then 0 else 1 end", "case events.action when 'opt_in' then 0 else 1 end"
        ),
        "safety",
    ),
    "consent_ledger lets the earliest event win": (
        "consent_ledger",
        lambda sql: sql.replace("order by events.event_at desc,", "order by events.event_at asc,"),
        "any",  # the liveness check often sees it first
    ),
}
SLOW_TO_FIND = {"consent_ledger lets an opt-in win a tie", "consent_ledger lets the earliest event win"}


def test_every_breakage_still_changes_its_models_sql(compiled_project: CompiledProject) -> None:
    """The slow searches below run outside `make test`: an edit of a model that moves the text a
    breakage replaces would leave them breaking nothing (with_sql refuses a transform that
    changes nothing), unseen until someone runs the slow tests."""
    for model, transform, _ in BROKEN_MODELS.values():
        compiled_project.with_sql(model, transform)


@pytest.mark.timeout(1800)
@pytest.mark.parametrize(
    "broken", [pytest.param(b, marks=[pytest.mark.slow] if b in SLOW_TO_FIND else []) for b in BROKEN_MODELS]
)
def test_invariant_catches_a_broken_model(
    compiled_project: CompiledProject, session_warehouse: Warehouse, broken: str
) -> None:
    """The same state machine, replayed against a deliberately broken model, must fail."""
    model, transform, check = BROKEN_MODELS[broken]
    slow = broken in SLOW_TO_FIND
    cfg = _settings(
        max_examples=300 if slow else 100,
        stateful_step_count=10 if slow else 6,
        derandomize=True,  # the same search every run
        phases=[Phase.generate],  # report the first failure found, do not shrink it
    )
    expected = "reliability #1 violated" if check == "safety" else "reliability #1 violated|liveness"
    stats = RunStats()
    broken_project = compiled_project.with_sql(model, transform)
    with session_warehouse.replaying(broken_project) as wh, pytest.raises(AssertionError, match=expected) as caught:
        run_machine(wh, cfg, check_liveness=check != "safety", stats=stats)
    print(
        f"{broken}: caught after {stats.examples} examples, {stats.steps} steps:",
        " ".join(str(caught.value).splitlines()[:2])[:300],
    )


# ---- time between the build and the send (docs/reliability.md #16) ---------------------------------


def test_no_opt_out_landed_after_the_build_is_ever_sent_to(session_warehouse: Warehouse) -> None:
    started = time.perf_counter()
    stats = run_machine(session_warehouse, _settings(max_examples=6, stateful_step_count=10), base=TimedConsentMachine)
    print(f"timed state machine: {stats}, {time.perf_counter() - started:.1f} s")
    assert stats.rules.get("build"), "no build ran: the marts never existed"
    assert stats.late_saves, "no opt-out ever landed between a build and a send: the test proved nothing"


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_no_opt_out_landed_after_the_build_is_ever_sent_to_long(session_warehouse: Warehouse) -> None:
    stats = run_machine(session_warehouse, _settings(max_examples=50, stateful_step_count=25), base=TimedConsentMachine)
    print(f"timed state machine (slow): {stats}")
    assert stats.late_saves


def test_the_timed_invariant_catches_an_export_without_the_send_time_check(
    session_warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The export as it was: the marts of the last build alone. An unsubscribe landed after the
    build is then still sent to, and the timed invariant says so."""
    machine = type(
        "Machine", (TimedConsentMachine,), {"wh": session_warehouse, "stats": RunStats(), "check_liveness": False}
    )()
    idx = machine.fresh_systems()  # a customer deliverable everywhere, built
    machine.check_now()
    machine.opt_out(idx, {"channel": "email", "via": 0, "by": "email"})  # a shop unsubscribe lands
    machine.check_now()  # the send-time check holds the person back
    monkeypatch.setattr(sendtime, "check", lambda con, secret=None: sendtime.LateOptOuts())
    with pytest.raises(AssertionError, match="reliability #16 violated: person 0 would be sent email"):
        machine.check_now()
