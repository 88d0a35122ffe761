"""A first look at a brand's own data without Airflow: `yorisoi ingest --from FOLDER|URL` loads
exports through the same extractors the ingest DAGs run, into the embedded warehouse.

- a **folder** of CSV exports: the registry's file source (`kind: files`). Each file that an
  enabled table's `pattern` matches (in ``FOLDER/<feed>/`` or directly in ``FOLDER``) is copied
  to a staging inbox under ``var/ingest/<source>/`` with the manifest a partner would write (bytes,
  SHA-256, rows), then read by :func:`yorisoi.sources.sftp_files.ingest_drops` through
  :class:`LocalFolder`, so the same gates apply (encoding, column drift, rejects with line
  numbers, quarantine). The brand's folder itself is never changed.
- a **database URL** (``postgresql+psycopg://…``, ``mysql+pymysql://…``, ``sqlite:///…``): the
  registry's database source through its mapping (:func:`yorisoi.sources.oms.ingest_oms`).
- an **http(s) URL**: the registry's API source (:func:`yorisoi.sources.ecommerce.ingest_ecommerce`),
  with the access token from ``YORISOI_SHOP_TOKEN``.

Every registry table's raw table is then created if missing (:func:`init_raw_tables`), so
``yorisoi dbt build`` can follow at once.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from .registry import Registry, RegistryError, Source, load_registry

log = logging.getLogger(__name__)

SHOP_TOKEN_ENV = "YORISOI_SHOP_TOKEN"  # noqa: S105 (the variable's name, not a secret)


@dataclass
class LocalIngest:
    """What `ingest_from` did: the source read, rows landed per table, files and their fate."""

    source: str
    kind: str
    location: str
    tables: dict[str, int] = field(default_factory=dict)
    files: list[dict[str, Any]] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "from": self.location,
            "rows": self.tables,
            "files": self.files,
            "unmatched_files": self.unmatched,
            "alerts": self.alerts,
        }


class _LocalFile:
    """A local file with the SFTP file calls the extractor uses (``prefetch``, bytes or text)."""

    def __init__(self, path: Path, mode: str):
        self._f = open(path, mode.replace("b", "") + "b")  # noqa: SIM115 - closed by __exit__ / close

    def prefetch(self) -> None:
        """Nothing to fetch ahead on a local disk."""

    def read(self, size: int = -1) -> bytes:
        return self._f.read(size)

    def write(self, data: str | bytes) -> int:
        return self._f.write(data.encode("utf-8") if isinstance(data, str) else data)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> _LocalFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalFolder:
    """The SFTP client calls of :func:`~yorisoi.sources.sftp_files.ingest_drops` (``stat``,
    ``listdir_attr``, ``open``, ``mkdir``, ``rename``) on a local folder, paths relative to
    `root`, so a folder of exports goes through the same gates as an SFTP drop."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def stat(self, path: str):
        import paramiko

        return paramiko.SFTPAttributes.from_stat(self._path(path).stat())

    def listdir_attr(self, folder: str) -> list:
        import paramiko

        return [paramiko.SFTPAttributes.from_stat(p.stat(), p.name) for p in sorted(self._path(folder).iterdir())]

    def open(self, path: str, mode: str = "r") -> _LocalFile:
        return _LocalFile(self._path(path), mode)

    def mkdir(self, path: str) -> None:
        self._path(path).mkdir()

    def rename(self, src: str, dst: str) -> None:
        target = self._path(dst)
        if target.exists():  # as on SFTP: a rename never overwrites
            raise OSError(errno.EEXIST, f"{dst} exists")
        self._path(src).rename(target)


def _count_records(path: Path, encoding: str) -> int:
    """CSV records after the header, read in the table's encoding (what a partner's manifest says)."""
    from .sftp_files import decode_to_utf8

    with tempfile.TemporaryDirectory(prefix="yorisoi-count-") as tmp:
        decoded = Path(tmp) / "utf8.csv"
        decode_to_utf8(path, decoded, encoding)
        with open(decoded, encoding="utf-8", newline="") as f:
            return max(sum(1 for _ in csv.reader(f)) - 1, 0)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _only(registry: Registry, kind: str, name: str | None) -> Source:
    if name:
        source = registry.source(name)
        if source.kind != kind:
            raise RegistryError(f"sources.{name}: kind {source.kind!r}, but this input needs a {kind!r} source")
        return source
    found = [s for s in registry.sources.values() if s.kind == kind and s.enabled]
    if len(found) != 1:
        names = sorted(s.name for s in found)
        raise RegistryError(
            f"{len(found)} enabled {kind!r} sources in {registry.path} ({names}); name one with --source"
        )
    return found[0]


def stage_folder(folder: Path, source: Source, inbox: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """Copy the files of `folder` that an enabled table of `source` matches into
    ``inbox/<feed>/``, each with its manifest. Returns ((feed, file) staged, files matched by no table)."""
    import fnmatch

    from .sftp_files import MANIFEST_SUFFIX, REASON_SUFFIX

    tables = list(source.enabled_tables().values())
    staged: list[tuple[str, str]] = []
    candidates = [p for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".")]
    unmatched = []
    for path in candidates:
        if path.name.endswith((MANIFEST_SUFFIX, REASON_SUFFIX)):
            continue
        feed_dir = path.parent.name if path.parent != folder else None
        table = next(
            (
                t
                for t in tables
                if fnmatch.fnmatchcase(path.name, str(t.options.get("pattern", "")))
                and feed_dir in (None, t.options.get("feed"))
            ),
            None,
        )
        if table is None:
            unmatched.append(str(path.relative_to(folder)))
            continue
        feed = str(table.options.get("feed", table.name))
        target = inbox / feed / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        manifest = {
            "bytes": target.stat().st_size,
            "sha256": _sha256(target),
            "rows": _count_records(target, str(table.options.get("encoding", "utf-8"))),
        }
        (inbox / feed / (path.name + MANIFEST_SUFFIX)).write_text(json.dumps(manifest), "utf-8")
        staged.append((feed, path.name))
    return staged, unmatched


def ingest_from(
    location: str,
    *,
    source_name: str | None = None,
    registry: Registry | None = None,
    warehouse=None,
    run_id: str | None = None,
    load_date: date | None = None,
    read: str | None = None,
) -> LocalIngest:
    """Load `location` (a folder, a database URL or an http(s) shop URL; see the module doc) into
    the warehouse (default: the embedded one) with the registry's extractors. `source_name`: the
    registry source to read it as (default: the only enabled source of the matching kind);
    `read`: how a shop is read (auto, rest or bulk; default: the registry's)."""
    from .. import paths
    from .catalog import init_raw_tables
    from .landing import Lake, Warehouse

    registry = registry or load_registry()
    warehouse = warehouse or Warehouse(paths.warehouse_path(), Lake(paths.lake_dir()))
    now = datetime.now(UTC)
    run_id = run_id or f"local-{now:%Y%m%dT%H%M%S}"
    load_date = load_date or now.date()
    folder = Path(location).expanduser()
    if folder.is_dir():
        out = _ingest_folder(folder.resolve(), _only(registry, "files", source_name), warehouse, run_id, load_date)
    elif location.startswith(("http://", "https://")):
        out = _ingest_shop(location, _only(registry, "api", source_name), warehouse, run_id, load_date, read)
    elif "://" in location:
        out = _ingest_database(location, _only(registry, "database", source_name), warehouse, run_id, load_date)
    else:
        raise FileNotFoundError(f"{location}: not a folder, a database URL or an http(s) URL")
    init_raw_tables(warehouse, registry)
    return out


def _ingest_folder(folder: Path, source: Source, warehouse, run_id: str, load_date: date) -> LocalIngest:
    from .. import paths
    from .sftp_files import ingest_drops

    work = paths.var_dir() / "ingest" / source.name / run_id
    inbox_name = str(source.options.get("inbox", "inbox")).strip("/")
    staged, unmatched = stage_folder(folder, source, work / inbox_name)
    out = LocalIngest(source.name, source.kind, str(folder), unmatched=unmatched)
    report = ingest_drops(
        warehouse,
        source,
        LocalFolder(work),
        run_id=run_id,
        load_date=load_date,
        now=datetime.now(UTC),
        workdir=work / "tmp",
    )
    out.tables = {name: t.rows_loaded for name, t in report.tables.items()}
    out.files = [
        {
            "file": f.file,
            "table": f.table,
            "status": f.status,
            "rows": f.rows,
            "rejects": f.rejects,
            "reason": f.reason,
            "moved_to": str(work / f.moved_to) if f.moved_to else None,
        }
        for f in report.files
    ]
    out.alerts = list(report.alerts())
    log.info("staged %d file(s) from %s in %s", len(staged), folder, work)
    return out


def _ingest_shop(url: str, source: Source, warehouse, run_id: str, load_date: date, read: str | None) -> LocalIngest:
    from .ecommerce import ShopClient, ingest_ecommerce

    token = os.environ.get(SHOP_TOKEN_ENV)
    if not token:
        raise RegistryError(f"set {SHOP_TOKEN_ENV} to the shop's Admin API access token")
    with ShopClient(url, token) as client:
        results = ingest_ecommerce(warehouse, source, client, run_id=run_id, load_date=load_date, read=read)
    return LocalIngest(source.name, source.kind, url, tables={n: r.rows for n, r in results.items()})


def _ingest_database(url: str, source: Source, warehouse, run_id: str, load_date: date) -> LocalIngest:
    import sqlalchemy

    from .oms import ingest_oms

    engine = sqlalchemy.create_engine(url)
    try:
        results = ingest_oms(warehouse, source, engine, run_id=run_id, load_date=load_date)
    finally:
        engine.dispose()
    shown = sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    return LocalIngest(source.name, source.kind, shown, tables={n: r.rows for n, r in results.items()})
