"""What the activation DAG's tasks (and `yorisoi activation ...`) call.

- :func:`plan` / :func:`due`: which (audience, destination) pairs are due now. An audience with a
  `schedule` (cron, local time) is due when a fire time fell since the last check; one without is
  due whenever the segment marts were rebuilt (the DAG was triggered by their assets).
- :func:`allocate`: for every due audience, the circuit breaker's upstream checks (dbt tests,
  Great Expectations), its members (selection ∩ deliverable, group and variant), the size check,
  then arbitration across all of them (exit conditions, frequency caps, priority). Writes each
  passing audience's members to the store's `audience_members` and the run's allocation to
  `<var>/activation/allocations/<run_id>.parquet`; the DAG maps the export over the pairs it returns.
- :func:`activate`: one (audience, destination) export: the allocation of the run (computed here
  when there is none: a single audience from the command line), consent checked again now (the
  opt-outs landed since the consent build; refused when that cannot be shown), eligibility
  re-read from the warehouse, the destination's records, then `engine.sync` (diff, full, dry run
  or test send).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from .. import paths
from ..transform import local_time_zone
from .delivery.destinations.base import Destination, Operation, Record
from .delivery.destinations.line import aggregation_unit
from .selection import breaker
from .selection.definitions import (
    Audience,
    Audiences,
    DestinationConfig,
    Destinations,
    load_audiences,
    load_destinations,
)

log = logging.getLogger(__name__)

LOCAL_TIME_ZONE = local_time_zone()  # the brand's (the same as build_segments)
DEFAULT_TICK = timedelta(minutes=15)  # how often the DAG looks for scheduled audiences
MODES = ("diff", "full", "dry_run", "test")


# ---- the context ---------------------------------------------------------------------------------


def _match_key() -> bytes:
    """The project's match-key secret ($YORISOI_MATCH_KEY / _FILE; under Airflow the connection
    yorisoi_match_key; for the demo the key file dbt created under var/keys)."""
    from ..privacy.keys import MissingMatchKey, match_key_secret

    try:
        return match_key_secret()
    except MissingMatchKey:
        with contextlib.suppress(Exception):
            from ..transform import match_key_from_airflow

            match_key_from_airflow()
            return match_key_secret()
        demo = paths.match_key_file()
        if demo.exists():
            os.environ["YORISOI_MATCH_KEY_FILE"] = str(demo)
            return match_key_secret()
        raise


@dataclass
class Context:
    """Everything a run reads, each replaceable (tests point it at their own warehouse, store,
    destinations and results files)."""

    audiences: Audiences
    destinations: Destinations
    warehouse: Path
    store_factory: Callable[[], Any]
    secret_factory: Callable[[], bytes] = _match_key
    build_destination: Callable[[Mapping[str, Any]], Destination] | None = None
    dbt_results: Path | None = None
    quality_results: Path | None = None
    engine_sync: Callable[..., Any] | None = None
    _store: Any = field(default=None, repr=False)
    _secret: bytes | None = field(default=None, repr=False)

    @classmethod
    def load(
        cls,
        *,
        audiences_dir: str | Path | None = None,
        destinations_file: str | Path | None = None,
        warehouse: str | Path | None = None,
        store_url: str | None = None,
        **overrides: Any,
    ) -> Context:
        destinations = load_destinations(destinations_file)

        def store_factory() -> Any:
            from .delivery.store import ActivationStore

            return ActivationStore(store_url)

        return cls(
            audiences=load_audiences(audiences_dir, destinations),
            destinations=destinations,
            warehouse=Path(warehouse or paths.warehouse_path()),
            store_factory=overrides.pop("store_factory", store_factory),
            **overrides,
        )

    @property
    def store(self) -> Any:
        if self._store is None:
            self._store = self.store_factory()
        return self._store

    @property
    def secret(self) -> bytes:
        if self._secret is None:
            self._secret = self.secret_factory()
        return self._secret

    def build(self, config: Mapping[str, Any]) -> Destination:
        if self.build_destination is not None:
            return self.build_destination(config)
        from .delivery.destinations import build

        return build(config)

    def sync(self, *args: Any, **kwargs: Any) -> Any:
        if self.engine_sync is not None:
            return self.engine_sync(*args, **kwargs)
        from .delivery.engine import sync

        return sync(*args, **kwargs)


# ---- what is due -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Due:
    audience: str
    destination: str
    interval: str  # the send interval the ledger keys on: a cron fire time, or the as-of day
    why: str

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def _utc(at: datetime | None) -> datetime:
    at = at or datetime.now(UTC)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def last_fire(schedule: str, as_of: datetime) -> datetime:
    """The latest fire time of `schedule` (local time) at or before `as_of`."""
    from croniter import croniter

    local = _utc(as_of).astimezone(ZoneInfo(LOCAL_TIME_ZONE))
    return croniter(schedule, local + timedelta(seconds=1)).get_prev(datetime)


def interval_for(audience: Audience, as_of: datetime) -> str:
    """The run interval of `audience` at `as_of`: its last cron fire time (local, to the minute),
    or, for audiences run after every segment build, the as-of day ($YORISOI_AS_OF, else the
    local date)."""
    if audience.schedule:
        return last_fire(audience.schedule, as_of).strftime("%Y-%m-%dT%H:%M%z")
    return os.environ.get("YORISOI_AS_OF") or _utc(as_of).astimezone(ZoneInfo(LOCAL_TIME_ZONE)).date().isoformat()


def due(
    as_of: datetime | None = None,
    *,
    since: datetime | None = None,
    triggered_by: Collection[str] | None = None,
    context: Context | None = None,
    audiences: Iterable[Audience] | None = None,
) -> list[Due]:
    """The (audience, destination) pairs due at `as_of`, in priority order.

    `since`: the previous check (default `as_of` − 15 minutes, the DAG's tick); a scheduled
    audience is due when a fire time is in (since, as_of]. `triggered_by`: the asset names that
    triggered the run (`marts.trigger_audiences`, ...); audiences without a schedule are due when
    it is non-empty, and also when it is None (a manual run that does not say)."""
    as_of = _utc(as_of)
    since = _utc(since) if since else as_of - DEFAULT_TICK
    pool = list(audiences) if audiences is not None else list((context or Context.load()).audiences)
    out = []
    for a in sorted(pool, key=lambda a: (a.priority, a.name)):
        if not a.enabled:
            continue
        if a.schedule:
            fire = last_fire(a.schedule, as_of)
            if not fire > since:
                continue
            why = f"scheduled {a.schedule} ({fire:%Y-%m-%d %H:%M %Z})"
        else:
            if triggered_by is not None and not triggered_by:
                continue
            why = f"segments rebuilt ({', '.join(sorted(triggered_by))})" if triggered_by else "after the segment build"
        interval = interval_for(a, as_of)
        out += [Due(a.name, d, interval, why) for d in a.destination_names]
    return out


def plan(
    as_of: datetime | None = None,
    *,
    since: datetime | None = None,
    triggered_by: Collection[str] | None = None,
    context: Context | None = None,
) -> list[tuple[str, str]]:
    """`(audience, destination)` pairs due now (see :func:`due`)."""
    return [(d.audience, d.destination) for d in due(as_of, since=since, triggered_by=triggered_by, context=context)]


# ---- allocation (breaker, membership, arbitration) --------------------------------------------------


def allocations_dir() -> Path:
    return paths.var_dir() / "activation" / "allocations"


def _safe(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)[:200]


def new_run_id(prefix: str = "manual") -> str:
    return f"{prefix}__{datetime.now(UTC):%Y%m%dT%H%M%S%f}"


@dataclass
class RunAllocation:
    """A run's allocation: sends per (audience, channel), variants, and the breaker's decisions."""

    run_id: str
    as_of: str
    sends: pd.DataFrame  # audience, channel, person_id, grp, variant
    decisions: dict[str, dict[str, Any]]  # audience -> breaker decision (as_dict)
    stats: dict[str, dict[str, Any]]

    def person_ids(self, audience: str, channel: str, sync: str = "message") -> list[str]:
        s = self.sends
        chosen = (s["audience"] == audience) & (s["channel"] == channel) & (s["sync"] == sync)
        return s.loc[chosen, "person_id"].astype(str).tolist()

    def variants(self, audience: str) -> dict[str, str | None]:
        s = self.sends[self.sends["audience"] == audience]
        return dict(zip(s["person_id"].astype(str).tolist(), s["variant"].tolist(), strict=True))

    def save(self) -> Path:
        folder = allocations_dir()
        folder.mkdir(parents=True, exist_ok=True)
        base = folder / _safe(self.run_id)
        tmp = base.with_suffix(".parquet.tmp")
        self.sends.astype({"variant": "string"}).to_parquet(tmp, index=False)
        tmp.replace(base.with_suffix(".parquet"))
        meta = {"run_id": self.run_id, "as_of": self.as_of, "decisions": self.decisions, "stats": self.stats}
        tmp = base.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(meta, ensure_ascii=False, default=str, indent=1), encoding="utf-8")
        tmp.replace(base.with_suffix(".json"))
        return base.with_suffix(".json")

    @classmethod
    def load(cls, run_id: str) -> RunAllocation | None:
        base = allocations_dir() / _safe(run_id)
        if not base.with_suffix(".json").exists() or not base.with_suffix(".parquet").exists():
            return None
        meta = json.loads(base.with_suffix(".json").read_text(encoding="utf-8"))
        sends = pd.read_parquet(base.with_suffix(".parquet"))
        if "sync" not in sends:  # saved before list syncs were told apart: every row was a message
            sends.insert(2, "sync", "message")
        sends["variant"] = sends["variant"].astype(object).where(sends["variant"].notna(), None)
        return cls(run_id, meta["as_of"], sends, meta["decisions"], meta["stats"])


def sync_kind(cfg: DestinationConfig) -> str:
    """`list` when the destination keeps a list (it can remove members), else `message`."""
    from .delivery.destinations import destination_class
    from .selection.arbitration import LIST, MESSAGE

    return LIST if Operation.REMOVE in destination_class(cfg.kind).supports else MESSAGE


def _size_of(members: Any) -> int | None:
    """How many members the store's last run had (None when there was no run)."""
    if members is None:
        return None
    if isinstance(members, pd.DataFrame):
        return None if members.empty else len(members)
    try:
        n = len(members)
    except TypeError:
        members = list(members)
        n = len(members)
    return n or None


def _without_withdrawn(members: Any, late: Any, channels: Sequence[str]) -> Any:
    """`members` without the channels people withdrew from since the consent build (and without
    the people left with no channel)."""
    if late is None or not late.withdrawals:
        return members
    frame = members.frame
    for ch in channels:
        frame[f"deliverable_{ch}"] &= ~frame["person_id"].isin(late.people_on(ch))
    kept = frame[[f"deliverable_{ch}" for ch in channels]].any(axis=1)
    members.not_contactable += int((~kept).sum())
    members.frame = frame[kept].reset_index(drop=True)
    return members


def allocate(
    pairs: Sequence[tuple[str, str]] | Sequence[Due],
    *,
    as_of: datetime | None = None,
    run_id: str | None = None,
    context: Context | None = None,
    write: bool = True,
    alert: bool = True,
    plan_through: bool = False,
) -> RunAllocation:
    """Breaker, membership and arbitration for every audience in `pairs`; with `write`, the
    members go to the store and the allocation to var/activation/allocations/. A tripped breaker
    leaves its audience out (alerted, with the reason in `decisions`); with `plan_through` (dry
    runs) it is allocated all the same, so the plan shows what would have gone out."""
    from .selection.arbitration import arbitrate
    from .selection.membership import connect_warehouse, eligible_members, member_rows

    ctx = context or Context.load()
    as_of_dt = _utc(as_of)
    run_id = run_id or new_run_id()
    wanted: dict[str, list[str]] = {}
    for p in pairs:
        name, dest = (p.audience, p.destination) if isinstance(p, Due) else p
        wanted.setdefault(name, []).append(dest)
    audiences = [ctx.audiences[n] for n in wanted]
    decisions: dict[str, breaker.Decision] = {}
    upstream_cache: dict[tuple, list[breaker.Check]] = {}
    for a in audiences:
        settings = breaker.settings_for(a, ctx.destinations.breaker)
        key = (settings.require_dbt, settings.require_quality)
        if key not in upstream_cache:
            upstream_cache[key] = breaker.check_upstream(
                settings, dbt_results=ctx.dbt_results, quality_results=ctx.quality_results
            )
        decisions[a.name] = breaker.Decision(a.name, list(upstream_cache[key]))
    contenders = []
    stats: dict[str, dict[str, Any]] = {}
    con = connect_warehouse(ctx.warehouse)
    try:
        consent, late = breaker.check_consent(con, ctx.secret)
        for d in decisions.values():
            d.checks.append(consent)
        for a in audiences:
            if not decisions[a.name].passed and not plan_through:
                continue  # no membership is read for an export that will not happen
            members = _without_withdrawn(eligible_members(a, con, ctx.secret), late, a.channels)
            previous = _size_of(ctx.store.last_members(a.name))
            size = breaker.check_size(len(members), previous, breaker.settings_for(a, ctx.destinations.breaker))
            decisions[a.name].checks.append(size)
            stats[a.name] = {
                "selected": members.selected,
                "not_contactable": members.not_contactable,
                "duplicate_rows": members.duplicate_rows,
                "members": len(members),
                "control": int((members.frame["grp"] == "control").sum()),
            }
            if decisions[a.name].passed or plan_through:
                contenders.append((a, members))
        kinds = {(a.name, d): sync_kind(ctx.destinations[d]) for a, _ in contenders for d in wanted[a.name]}

        def channels_of(audience: str, kind: str) -> list[str]:
            return sorted({ctx.destinations[d].channel for d in wanted[audience] if kinds[audience, d] == kind})

        channels = {a.name: channels_of(a.name, "message") for a, _ in contenders}
        lists = {a.name: channels_of(a.name, "list") for a, _ in contenders}
        allocation = arbitrate(
            contenders,
            store=ctx.store,
            as_of=as_of_dt,
            default_caps=ctx.destinations.frequency_caps,
            channels=channels,
            lists=lists,
            con=con,
        )
    finally:
        con.close()
    for name, counts in allocation.counts.items():
        stats.setdefault(name, {}).update(counts)
    for a, _ in contenders:
        kept = allocation.members[a.name]
        stats[a.name]["members_after_exit"] = len(kept)
        stats[a.name]["allocated"] = {ch: len(allocation.person_ids(a.name, ch)) for ch in channels[a.name]} | {
            f"{ch} list": len(allocation.person_ids(a.name, ch, "list")) for ch in lists[a.name]
        }
        if write:
            ctx.store.write_members(member_rows(run_id, kept, datetime.now(UTC)))
    if alert:
        for name, d in decisions.items():
            if not d.passed:
                breaker.alert(d, run_id=run_id, extra={"destinations": wanted[name]})
    result = RunAllocation(
        run_id=run_id,
        as_of=as_of_dt.isoformat(),
        sends=allocation.sends,
        decisions={n: d.as_dict() for n, d in decisions.items()},
        stats=stats,
    )
    if write:
        result.save()
    return result


# ---- one export ---------------------------------------------------------------------------------------


def _summary_dict(summary: Any) -> dict[str, Any]:
    if summary is None:
        return {}
    if dataclasses.is_dataclass(summary):
        return dataclasses.asdict(summary)
    if isinstance(summary, Mapping):
        return dict(summary)
    return dict(vars(summary))


def destination_config(audience: Audience, cfg: DestinationConfig) -> dict[str, Any]:
    """The factory's input for `audience` at `cfg`: the destination's entry, narrowed to the
    audience's columns for it, with the audience's templates and options."""
    use = next(d for d in audience.destinations if d.name == cfg.name)
    config = cfg.options()
    config["allowed_columns"] = [c for c in audience.destination_columns(cfg.name) if c != cfg.key_field]
    config["key_field"] = cfg.key_field
    if use.templates is not None:
        if cfg.kind == "smtp_email":
            config["templates"] = {k: t.model_dump(exclude_none=True) for k, t in use.templates.items()}
        else:  # LINE and SMS: the text
            config["templates"] = {k: t.body for k, t in use.templates.items()}
    if cfg.kind == "line_multicast":  # LINE's statistics per audience (docs/campaign-measurement.md)
        config.setdefault("aggregation_unit", aggregation_unit(audience.name))
    config.update(use.options)
    return config


class PlanningDestination(Destination):
    """Stands in for a destination in a dry run when the real one cannot be made here (its
    Airflow connection is only defined on the workers): the same name, channel, key, allow-list
    and operations; it never delivers."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        from .delivery.destinations import destination_class

        cls = destination_class(str(config["kind"]))
        self.name = str(config["name"])
        self.channel = str(config["channel"])
        self.key_field = str(config.get("key_field") or getattr(cls, "key_field", "person_id"))
        self.allowed_columns = frozenset(config.get("allowed_columns") or ())
        self.supports = cls.supports
        self.max_batch = int(config.get("max_batch") or getattr(cls, "MAX_BATCH", 500))
        self.rate_per_second = None

    def deliver(self, operation, records, *, idempotency_key):
        raise RuntimeError(f"{self.name}: a dry run never delivers")


def seed_records(audience: Audience, cfg: DestinationConfig, *, variant: str | None = None) -> list[Record]:
    """The seed list (テスト配信) of a destination, `test_recipients` in include/destinations.yml:
    one record per recipient, the audience's variants dealt round-robin (or all `variant`);
    fields from the entry, `<column>` where the entry does not give one. No customer data."""
    seeds = cfg.test_recipients
    names = [v.name for v in audience.variants]
    out = []
    for i, seed in enumerate(seeds):
        seed = {"key": seed} if isinstance(seed, str) else dict(seed)
        v = variant or names[i % len(names)]
        fields = {c: (v if c == "variant" else seed.get(c, f"<{c}>")) for c in audience.destination_columns(cfg.name)}
        fields.pop(cfg.key_field, None)
        out.append(Record(key=str(seed["key"]), person_id=f"test:{seed['key']}", fields=fields, variant=v))
    return out


# The action of include/roles.yml each mode needs (docs/roles.md).
MODE_ACTIONS = {
    "diff": "execute_export",
    "full": "execute_export",
    "test": "send_test_to_seed_list",
    "dry_run": "view_deliverable_counts",
}
# The DAGs act as the platform: only admins may run, clear or trigger them (run_dags).
DAG_ROLE = "admin"


def activate(
    audience_name: str,
    destination_name: str,
    *,
    mode: str = "diff",
    dry_run: bool = False,
    test: bool = False,
    as_of: datetime | None = None,
    run_id: str | None = None,
    interval: str | None = None,
    test_variant: str | None = None,
    context: Context | None = None,
    role: str | None = None,
) -> dict[str, Any]:
    """Export `audience_name` to `destination_name` and return a summary (JSON-able).

    `mode`: diff (default) or full; `dry_run`: plan only (nothing is sent, members are not
    written, no alert); `test`: send only to the destination's seed list. `run_id`: the DAG run
    whose allocation to use (computed here when it has none). `role` (else $YORISOI_ROLE) must be
    allowed the mode's action (MODE_ACTIONS), and a real send needs the approval of the audience's
    current definition (yorisoi.activation.approvals). The summary's `status` is `synced`,
    `planned`, `tested` or `skipped` (with `reason`: the breaker's)."""
    from .. import roles
    from .approvals import require_approval
    from .selection.membership import build_records, connect_warehouse, suppression_check

    ctx = context or Context.load()
    audience = ctx.audiences[audience_name]
    cfg = ctx.destinations[destination_name]
    if destination_name not in audience.destination_names:
        raise ValueError(f"audience {audience_name} does not go to {destination_name} ({audience.destination_names})")
    mode = "dry_run" if dry_run else "test" if test else mode
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    acting = roles.current_role(role)
    roles.check(acting, MODE_ACTIONS[mode])
    approval = require_approval(audience) if mode in ("diff", "full") else None
    as_of_dt = _utc(as_of)
    interval = interval or interval_for(audience, as_of_dt)
    base = {
        "audience": audience_name,
        "destination": destination_name,
        "channel": cfg.channel,
        "mode": mode,
        "interval": interval,
    }
    config = destination_config(audience, cfg)
    if mode == "test":
        seeds = seed_records(audience, cfg, variant=test_variant)
        if not seeds:
            raise ValueError(f"{destination_name} has no test_recipients in {ctx.destinations.file}")
        destination = ctx.build(config)
        try:
            summary = ctx.sync(
                ctx.store,
                destination,
                audience_name,
                [],
                interval=f"test:{interval}",
                mode="test",
                test_recipients=seeds,
            )
        finally:
            destination.close()
        return {
            **base,
            "status": "tested",
            "run_id": run_id,
            "test_recipients": len(seeds),
            "sync": _summary_dict(summary),
        }

    allocation = RunAllocation.load(run_id) if run_id else None
    if allocation is None or audience_name not in allocation.decisions:
        allocation = allocate(
            [(audience_name, destination_name)],
            as_of=as_of_dt,
            run_id=run_id,
            context=ctx,
            write=mode != "dry_run",
            alert=mode != "dry_run",
            plan_through=mode == "dry_run",
        )
    run_id = allocation.run_id
    decision = allocation.decisions[audience_name]
    base.update(run_id=run_id, breaker=decision, stats=allocation.stats.get(audience_name, {}))
    if not decision["passed"]:
        if mode != "dry_run":
            return {**base, "status": "skipped", "reason": decision["reason"]}
        base["would_skip"] = decision["reason"]  # a dry run still shows the plan

    con = connect_warehouse(ctx.warehouse)
    try:
        # consent again, now: opt-outs may have landed since the allocation (docs/reliability.md #16)
        consent, late = breaker.check_consent(con, ctx.secret)
        base["consent"] = {"passed": consent.passed, "reason": consent.reason, **consent.details}
        if not consent.passed:
            refused = breaker.Decision(audience_name, [consent], destination_name)
            if mode != "dry_run":
                breaker.alert(refused, run_id=run_id)
                return {**base, "status": "skipped", "reason": refused.reason}
            base["would_skip"] = refused.reason
        withdrawn = (late.people_on(cfg.channel), late.keys_on(cfg.channel)) if late else ((), ())
        record_set = build_records(
            audience,
            cfg,
            allocation.person_ids(audience_name, cfg.channel, sync_kind(cfg)),
            con,
            variants=allocation.variants(audience_name),
            secret=ctx.secret,
            withdrawn=withdrawn,
        )
    finally:
        con.close()
    try:
        destination = ctx.build(config)
    except Exception as e:
        if mode != "dry_run":
            raise
        log.warning("dry run of %s → %s plans without the destination (%s)", audience_name, destination_name, e)
        destination = PlanningDestination(config)
    from .delivery.engine import SyncError

    try:
        summary = ctx.sync(
            ctx.store,
            destination,
            audience_name,
            record_set.records,
            interval=interval,
            mode=mode,
            suppressed=suppression_check(cfg.channel, ctx.warehouse, secret=ctx.secret),
        )
    except SyncError as stopped:  # deferred or failed part-way: what did leave is still logged
        if mode in ("diff", "full"):
            _audit(stopped.summary, ctx, audience_name, cfg, destination, role=acting, approval=approval)
        raise
    finally:
        destination.close()
    if mode in ("diff", "full"):
        _audit(summary, ctx, audience_name, cfg, destination, role=acting, approval=approval)
    return {
        **base,
        "status": "planned" if mode == "dry_run" else "synced",
        "records": len(record_set.records),
        "dropped_at_export": record_set.dropped,
        "variants": pd.Series([r.variant for r in record_set.records], dtype=object).value_counts().to_dict(),
        "sync": _summary_dict(summary),
    }


def _audit(
    summary: Any,
    ctx: Context,
    audience: str,
    cfg: DestinationConfig,
    destination: Destination,
    *,
    role: str,
    approval: Mapping[str, Any] | None,
) -> None:
    """The operation log (yorisoi.audit): which people's data left for which destination, each
    file written (path and SHA-256), the approval the send ran under and, per person sent, the
    consent that allowed it (docs/reliability.md #20)."""
    from ..audit.log import record

    data = _summary_dict(summary)
    run_id = data.get("run_id")
    sent = [
        r["person_id"]
        for r in (ctx.store.changelog(run_id) if run_id and hasattr(ctx.store, "changelog") else [])
        if r.get("status") == "succeeded" and r.get("operation") in ("add", "update") and r.get("person_id")
    ]
    files = [
        {k: m.get(k) for k in ("path", "sha256", "rows", "bytes")}
        for m in getattr(destination, "published", None) or []
    ]
    record(
        "export",
        f"audience {audience}",
        rows=len(sent),
        destination=cfg.name,
        file_sha256=files[0]["sha256"] if len(files) == 1 else None,
        person_ids=sent,
        role=role,
        details={
            "sync_run": run_id,
            "channel": cfg.channel,
            "mode": data.get("mode"),
            "removes": data.get("removes"),
            "files": files,
            "approval_seq": (approval or {}).get("seq"),
            "definition_sha256": ((approval or {}).get("details") or {}).get("definition_sha256"),
        },
        evidence=consent_evidence(ctx.warehouse, cfg.channel, sent),
    )


def consent_evidence(warehouse: Path, channel: str, person_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Per person, the consent marts.deliverable_customers holds for `channel` now (at the send):
    its ID, since when, the system and record that carry it and how it was given."""
    if not person_ids:
        return []
    import pyarrow as pa

    from .selection.membership import connect_warehouse

    con = connect_warehouse(warehouse)
    try:
        con.register("sent", pa.table({"person_id": pa.array(list(person_ids), pa.string())}))
        rows = con.sql(
            "select d.person_id, d.channel, d.deliverable_id as consent_id, d.consented_at as since, "
            "d.consent_source as source, d.consent_record as record, d.consent_evidence as evidence "
            "from marts.deliverable_customers as d semi join sent using (person_id) "
            "where d.channel = $channel order by d.person_id",
            params={"channel": channel},
        ).to_arrow_table()
    finally:
        con.close()
    return rows.to_pylist()


# ---- what the DAG's tasks run --------------------------------------------------------------------------


def plan_task(
    as_of: datetime, *, since: datetime | None, triggered_by: Collection[str], context: Context | None = None
) -> list[dict[str, str]]:
    """The DAG's `plan` task: the pairs due, as dicts (XCom)."""
    return [d.as_dict() for d in due(as_of, since=since, triggered_by=triggered_by, context=context)]


def allocate_task(
    pairs: Sequence[Mapping[str, str]], *, as_of: datetime, run_id: str, context: Context | None = None
) -> list[dict[str, str]]:
    """The DAG's `allocate` task: breaker, members and arbitration for the whole run. Returns
    every pair: the export of an audience the breaker stopped (alerted here) is then skipped with
    the reason, visibly, in its own mapped task."""
    if not pairs:
        return []
    ctx = context or Context.load()
    dues = [Due(p["audience"], p["destination"], p["interval"], p.get("why", "")) for p in pairs]
    allocate(dues, as_of=as_of, run_id=run_id, context=ctx)
    return [d.as_dict() for d in dues]


def export_task(
    pair: Mapping[str, str],
    *,
    run_id: str | None = None,
    mode: str = "diff",
    as_of: datetime | None = None,
    context: Context | None = None,
) -> dict[str, Any]:
    """The DAG's mapped `export` task: one (audience, destination); a tripped breaker raises
    AirflowSkipException with the reason (already alerted)."""
    summary = activate(
        pair["audience"],
        pair["destination"],
        mode=mode,
        run_id=run_id,
        interval=pair.get("interval"),
        as_of=as_of,
        context=context,
        role=DAG_ROLE,
    )
    if summary["status"] == "skipped":
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(f"circuit breaker: {summary['reason']}")
    return json.loads(json.dumps(summary, default=str))
