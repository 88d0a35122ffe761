"""Four eyes before an audience's first real send (docs/reliability.md #20).

An audience is identified by its definition hash: the SHA-256 of the validated audience as
canonical JSON (selection, columns, destinations, templates, breaker settings ...), so any change
to the file that changes what is sent, to whom, or how it is checked is a new definition.

1. Someone whose role may `request_export` asks for it: :func:`request` (`yorisoi activation
   request AUDIENCE`) writes an `export_requested` entry to the operation log, naming the hash.
2. Someone else, whose role may `approve_export` (an admin), approves it: :func:`approve`
   (`yorisoi activation approve AUDIENCE`) finds the request for the same hash, refuses when the
   approver is the requester, and writes `export_approved`. A definition that switches a breaker
   check off (`breaker: {require_dbt: false}` or `require_quality: false`) is approved only with
   `allow_breaker_override` (`--allow-breaker-override`), and the entry lists the overrides.
3. A real send (diff or full) checks :func:`require_approval`: the log must hold an approval of
   the current hash. A test send (seed list) and a dry run need none.

Who is who comes from the operation log's actor: the OS user from the command line, the
principal the calling code names through the Python API (recorded next to the real OS user).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .. import roles
from ..audit import log
from .selection.definitions import Audience

REQUESTED = "export_requested"
APPROVED = "export_approved"
OVERRIDES = ("require_dbt", "require_quality")  # the checks an audience can switch off


class ApprovalError(PermissionError):
    """A request or approval is refused, or a real send has no approval."""


def definition_hash(audience: Audience) -> str:
    """SHA-256 of the audience's validated definition (canonical JSON)."""
    body = json.dumps(audience.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def breaker_overrides(audience: Audience) -> dict[str, bool]:
    """The breaker checks the audience switches off (`{check: False}`)."""
    return {name: False for name in OVERRIDES if getattr(audience.breaker, name) is False}


def _object(audience: Audience) -> str:
    return f"audience {audience.name}"


def _entries(audience: Audience, action: str, digest: str, log_dir: Path | None) -> list[dict[str, Any]]:
    return [
        e
        for e in log.list_entries(action=action, log_dir=log_dir)
        if e.get("object") == _object(audience) and (e.get("details") or {}).get("definition_sha256") == digest
    ]


def request(
    audience: Audience, *, role: str | None = None, actor: str | None = None, log_dir: Path | None = None
) -> dict[str, Any]:
    """Ask for the audience's current definition to be approved (role: request_export)."""
    acting = roles.current_role(role)
    roles.check(acting, "request_export")
    return log.record(
        REQUESTED,
        _object(audience),
        actor=actor,
        role=acting,
        details={
            "definition_sha256": definition_hash(audience),
            "source_file": audience.source_file,
            "destinations": audience.destination_names,
            "breaker_overrides": breaker_overrides(audience),
        },
        log_dir=log_dir,
    )


def approve(
    audience: Audience,
    *,
    role: str | None = None,
    actor: str | None = None,
    allow_breaker_override: bool = False,
    log_dir: Path | None = None,
) -> dict[str, Any]:
    """Approve the audience's current definition (role: approve_export; not its requester)."""
    acting = roles.current_role(role)
    roles.check(acting, "approve_export")
    digest = definition_hash(audience)
    requests = _entries(audience, REQUESTED, digest, log_dir)
    if not requests:
        raise ApprovalError(
            f"{audience.name}: no export request for this definition ({digest[:12]}); "
            f"first `yorisoi activation request {audience.name}`"
        )
    approver, _, _ = log.resolve_actor(actor)
    others = [e for e in requests if e["actor"] != approver]
    if not others:
        raise ApprovalError(
            f"{audience.name}: {approver} requested this definition ({digest[:12]}) and cannot approve it too "
            "(four eyes: another person with approve_export must)"
        )
    overrides = breaker_overrides(audience)
    if overrides and not allow_breaker_override:
        raise ApprovalError(
            f"{audience.name}: the definition switches breaker checks off ({', '.join(overrides)}); "
            "approve with --allow-breaker-override to accept that"
        )
    requested = others[-1]
    return log.record(
        APPROVED,
        _object(audience),
        actor=actor,
        role=acting,
        details={
            "definition_sha256": digest,
            "source_file": audience.source_file,
            "requested_by": requested["actor"],
            "requested_seq": requested["seq"],
            "breaker_overrides": overrides,
        },
        log_dir=log_dir,
    )


def approval_of(audience: Audience, log_dir: Path | None = None) -> dict[str, Any] | None:
    """The latest approval of the audience's current definition, or None."""
    found = _entries(audience, APPROVED, definition_hash(audience), log_dir)
    return found[-1] if found else None


def require_approval(audience: Audience, log_dir: Path | None = None) -> dict[str, Any]:
    """The approval a real send needs, or ApprovalError saying how to get one."""
    approval = approval_of(audience, log_dir)
    if approval is None:
        raise ApprovalError(
            f"{audience.name}: this definition ({definition_hash(audience)[:12]}) is not approved: "
            f"`yorisoi activation request {audience.name}`, then another person with approve_export runs "
            f"`yorisoi activation approve {audience.name}` (a test send needs no approval)"
        )
    return approval
