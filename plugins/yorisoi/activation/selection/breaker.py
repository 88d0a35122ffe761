"""The circuit breaker before every export (docs/reliability.md #13): nothing leaves unless

1. **dbt**: the last segment build's results, `<var>/dbt/builds/segments.json`
   (DBT_RUN_RESULTS), ran tests and every test is `pass` or `warn`, and no model errored (the
   scheduled build runs the data tests; unit tests are counted too when a build ran them);
2. **Great Expectations**: the marts quality gate passed. Its summary is read from
   `<var>/quality/latest/marts.json` (QUALITY_RESULTS), a JSON object written by the quality gate
   after every validation of the marts layer::

       {"layer": "marts", "success": true, "validated_at": "2026-11-01T05:41:00+00:00",
        "failed_suites": [], "failed_expectations": []}

   (`yorisoi.quality.validate.LayerResult.summary()` plus `validated_at`). No file, unreadable
   JSON, `success` not true, or a validation older than the dbt run it should have checked count
   as NOT passed, unless the audience or include/destinations.yml says `require_quality: false`;
3. **size**: the audience did not change size by more than `max_size_change` (a share of the
   last run's members, `store.last_members`) and `min_size_change_rows` people at once: a broken
   join that doubles a mart, or an empty consent table, stops here instead of at the customers.

4. **consent**: consent is current at the moment of sending (docs/reliability.md #16): the
   opt-outs landed in raw since the consent marts were built are read (`sendtime.check`) and
   their people and contact keys left out of the send. When that cannot be shown (no consent
   build marks, a raw consent table unreadable, rows the check cannot read) the export is
   refused. No setting switches this check off.

A tripped breaker skips the export and raises an alert that says why: logged at ERROR on
`yorisoi.alerts`, appended to `<var>/activation/alerts.jsonl`, and (in the DAG) the task is
skipped with the reason, which its on_skipped_callback reports.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ... import paths
from .definitions import Audience, BreakerSettings

log = logging.getLogger("yorisoi.alerts")

DBT_RUN_RESULTS = Path("dbt") / "builds" / "segments.json"  # under var/; kept by transform.build_task
QUALITY_RESULTS = Path("quality") / "latest" / "marts.json"  # under var/; written by the quality gate
ALERTS_FILE = Path("activation") / "alerts.jsonl"  # under var/
DEFAULTS = BreakerSettings(max_size_change=1.0, min_size_change_rows=100, require_dbt=True, require_quality=True)
PASSING_TEST_STATUSES = frozenset({"pass", "warn"})
FAILING_MODEL_STATUSES = frozenset({"error", "skipped", "runtime error"})


def dbt_results_path() -> Path:
    return paths.var_dir() / DBT_RUN_RESULTS


def quality_results_path() -> Path:
    return paths.var_dir() / QUALITY_RESULTS


def alerts_path() -> Path:
    return paths.var_dir() / ALERTS_FILE


@dataclass(frozen=True)
class Check:
    name: str  # dbt | quality | size
    passed: bool
    reason: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Decision:
    """The breaker's verdict for one audience (and destination, when given)."""

    audience: str
    checks: list[Check]
    destination: str | None = None

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def reason(self) -> str:
        failed = [c for c in self.checks if not c.passed]
        if not failed:
            return "all checks passed: " + "; ".join(c.reason for c in self.checks)
        return "; ".join(f"{c.name}: {c.reason}" for c in failed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "audience": self.audience,
            "destination": self.destination,
            "passed": self.passed,
            "reason": self.reason,
            "checks": [asdict(c) for c in self.checks],
        }


def settings_for(audience: Audience | None, defaults: BreakerSettings | None = None) -> BreakerSettings:
    """The audience's thresholds over include/destinations.yml's defaults over DEFAULTS."""
    merged = DEFAULTS.model_dump()
    for layer in (defaults, audience.breaker if audience else None):
        if layer is not None:
            merged.update({k: v for k, v in layer.model_dump().items() if v is not None})
    return BreakerSettings(**merged)


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        at = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def check_dbt(path: str | Path | None = None) -> Check:
    """Every test of the latest dbt invocation passed (or warned) and no model failed."""
    path = Path(path or dbt_results_path())
    if not path.exists():
        return Check("dbt", False, f"no dbt results at {path}: the build has not run (or its results were removed)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        results = doc["results"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return Check("dbt", False, f"cannot read the dbt results {path}: {e}")
    meta = doc.get("metadata") or {}
    which = (doc.get("args") or {}).get("which", "?")
    details = {"file": str(path), "generated_at": meta.get("generated_at"), "invocation": which}
    tests = [r for r in results if str(r.get("unique_id", "")).startswith(("test.", "unit_test."))]
    failing = [
        f"{r['unique_id']} ({r.get('status')}: {str(r.get('message') or '')[:200]})"
        for r in tests
        if r.get("status") not in PASSING_TEST_STATUSES
    ]
    broken = [
        f"{r['unique_id']} ({r.get('status')})"
        for r in results
        if str(r.get("unique_id", "")).startswith(("model.", "snapshot.", "seed."))
        and r.get("status") in FAILING_MODEL_STATUSES
    ]
    if failing or broken:
        what = []
        if failing:
            what.append(f"{len(failing)} of {len(tests)} dbt tests did not pass: {', '.join(failing[:10])}")
        if broken:
            what.append(f"{len(broken)} models failed or were skipped: {', '.join(broken[:10])}")
        return Check("dbt", False, "; ".join(what), {**details, "failing": failing, "models": broken})
    if not tests:
        return Check(
            "dbt",
            False,
            f"the latest dbt invocation (dbt {which}, {meta.get('generated_at')}) ran no tests, so the build's "
            "test results are unknown: rebuild (dbt build) before exporting",
            details,
        )
    warned = sum(1 for r in tests if r.get("status") == "warn")
    return Check("dbt", True, f"{len(tests)} dbt tests passed ({warned} warnings)", {**details, "tests": len(tests)})


def check_quality(path: str | Path | None = None, *, dbt_generated_at: str | None = None) -> Check:
    """The marts quality gate's latest summary says success, and it is not older than the dbt run."""
    path = Path(path or quality_results_path())
    if not path.exists():
        return Check(
            "quality",
            False,
            f"no Great Expectations results at {path}: the marts quality gate has not run "
            "(set require_quality: false to export without it)",
        )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return Check("quality", False, f"cannot read the Great Expectations results {path}: {e}")
    if not isinstance(doc, dict) or "success" not in doc:
        return Check("quality", False, f"{path} has no 'success' field")
    details = {"file": str(path), "validated_at": doc.get("validated_at"), "layer": doc.get("layer")}
    if doc["success"] is not True:
        failed = doc.get("failed_expectations") or doc.get("failed_suites") or []
        shown = ", ".join(str(f) for f in failed[:10]) or "no details given"
        return Check("quality", False, f"the Great Expectations suites failed: {shown}", {**details, "failed": failed})
    validated, built = _parse_time(doc.get("validated_at")), _parse_time(dbt_generated_at)
    if validated and built and validated < built:
        return Check(
            "quality",
            False,
            f"the Great Expectations results ({validated.isoformat()}) are older than the dbt build they should "
            f"check ({built.isoformat()}): validate the marts again",
            details,
        )
    return Check(
        "quality", True, f"Great Expectations suites passed ({doc.get('validated_at') or 'time not given'})", details
    )


def check_size(current: int, previous: int | None, settings: BreakerSettings) -> Check:
    """The audience's size moved by at most max_size_change (relative) or min_size_change_rows."""
    details = {"current": current, "previous": previous}
    if previous is None:
        return Check("size", True, f"first run: {current} members", details)
    change = current - previous
    relative = abs(change) / previous if previous else (0.0 if current == 0 else float("inf"))
    limit = settings.max_size_change if settings.max_size_change is not None else float("inf")
    rows = settings.min_size_change_rows or 0
    details.update({"relative_change": relative, "max_size_change": limit, "min_size_change_rows": rows})
    if relative > limit and abs(change) > rows:
        return Check(
            "size",
            False,
            f"the audience changed from {previous} to {current} members ({change:+d}, {relative:.0%}), beyond the "
            f"threshold of {limit:.0%} and {rows} people: check the marts, or raise breaker.max_size_change",
            details,
        )
    return Check("size", True, f"{current} members (last run {previous}, {change:+d})", details)


def check_consent(con: Any, secret: bytes | None = None) -> tuple[Check, Any]:
    """Consent is current now: (the check, the withdrawals landed since the build, or None when
    the check failed). See yorisoi.activation.selection.sendtime."""
    from .sendtime import ConsentNotCurrent, check

    try:
        late = check(con, secret)
    except ConsentNotCurrent as e:
        return Check("consent", False, f"cannot prove consent is current, export refused: {e}"), None
    except Exception as e:  # any failure to read is a failure to prove
        reason = f"cannot prove consent is current, export refused: {type(e).__name__}: {str(e).splitlines()[0]}"
        return Check("consent", False, reason), None
    return Check("consent", True, late.summary(), late.as_details()), late


def check_upstream(
    settings: BreakerSettings, *, dbt_results: str | Path | None = None, quality_results: str | Path | None = None
) -> list[Check]:
    """The dbt and Great Expectations checks (the same for every audience of a run)."""
    checks = []
    dbt = check_dbt(dbt_results)
    if settings.require_dbt is not False:
        checks.append(dbt)
    if settings.require_quality is not False:
        checks.append(check_quality(quality_results, dbt_generated_at=dbt.details.get("generated_at")))
    return checks


# ---- alerts ---------------------------------------------------------------------------------------

Notifier = Callable[[dict[str, Any]], None]
_notifiers: list[Notifier] = []


def add_notifier(notify: Notifier) -> None:
    """Also send every breaker alert to `notify` (e.g. a chat webhook)."""
    _notifiers.append(notify)


def alert(decision: Decision, *, run_id: str | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Report a tripped breaker: ERROR log line, a line in var/activation/alerts.jsonl, notifiers."""
    from ...runbook import next_step

    entry = {
        "at": datetime.now(UTC).isoformat(),
        "kind": "circuit_breaker",
        "run_id": run_id,
        **decision.as_dict(),
        **(extra or {}),
        "next_step": next_step("breaker"),
    }
    log.error(
        "export skipped by the circuit breaker: audience=%s destination=%s run=%s reason=%s. %s",
        decision.audience,
        decision.destination or "*",
        run_id,
        decision.reason,
        entry["next_step"],
    )
    path = alerts_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())
    for notify in list(_notifiers):
        try:
            notify(entry)
        except Exception:  # an alert channel failing must not hide the alert
            log.exception("a breaker notifier failed")
    return entry


def notify_skipped(context: dict[str, Any]) -> None:
    """Airflow on_skipped_callback of the export tasks: one WARNING line naming the task and why."""
    ti = context.get("task_instance")
    run_id = context.get("run_id")
    reason = context.get("exception")
    if not reason:  # the breaker's alert of this run says why
        alerts = [a for a in read_alerts() if a.get("run_id") == run_id]
        reason = "; ".join(dict.fromkeys(f"{a['audience']}: {a['reason']}" for a in alerts)) or "see the task log"
    from ...runbook import next_step

    log.warning(
        "export skipped: dag=%s task=%s map_index=%s run=%s reason=%s. %s",
        getattr(ti, "dag_id", "?"),
        getattr(ti, "task_id", "?"),
        getattr(ti, "map_index", "?"),
        run_id,
        reason,
        next_step("breaker"),
    )


def read_alerts(limit: int | None = None) -> Sequence[dict[str, Any]]:
    path = alerts_path()
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines[-limit:] if limit else lines
