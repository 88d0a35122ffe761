"""SFTP drops loaded safely (docs/reliability.md #10, #12), against the real local SFTP server.

Every test serves a temporary drop folder with `yorisoi_kit.servers.sftp.serve_in_thread` and connects
through Airflow's SFTPHook with the server's host key pinned (docs/reliability.md #11), as the DAG does.
Small fixture files are written here, each with a manifest computed by `_drop`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fnmatch import fnmatchcase
from pathlib import Path

import duckdb
import paramiko
import pytest
import yaml

from yorisoi.sources.landing import Lake, Warehouse
from yorisoi.sources.registry import DEFAULT_REGISTRY, Source, load_registry
from yorisoi.sources.sftp_files import (
    DecodeError,
    DropReport,
    DropsStopped,
    decode_to_utf8,
    describe_drift,
    ingest_drops,
)
from yorisoi_kit.servers.sftp import serve_in_thread

USER = "partner"
PASSWORD = "test-only-password"  # a test credential, not a secret
NOW = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
LOAD_DATE = date(2026, 11, 1)

MEMBERS_HEADER = "会員番号,氏名カナ,電話番号,生年月日,郵便番号,メールアドレス,入会店舗,入会日,更新日"
SALES_HEADER = (
    "取引番号,明細番号,店舗コード,店舗名,取引日時,取引区分,元取引番号,会員番号,商品コード,数量,単価,定価,金額,"
    "利用ポイント,付与ポイント"
)


def _sales_row(receipt: str, line_no: object = 1, quantity: object = 1, store: str = "㈱ヨリソイ 横浜店") -> str:
    return (
        f'"{receipt}",{line_no},"S003","{store}","2026/10/01 10:00:00","売上","","","YS-00001",'
        f"{quantity},1000,1000,1000,0,10"
    )


SALES = "\r\n".join(
    [SALES_HEADER, _sales_row("R1"), _sales_row("R2"), _sales_row("R3", 2, 3), _sales_row("R4"), ""]
).encode("cp932")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _records(data: bytes, encoding: str) -> int:
    text = data.decode("utf-8-sig" if encoding.startswith("utf-8") else encoding, errors="replace")
    return sum(1 for fields in csv.reader(io.StringIO(text, newline="")) if fields) - 1


def _manifest(name: str, data: bytes, encoding: str, rows: int | None = None) -> dict:
    return {
        "file": name,
        "rows": _records(data, encoding) if rows is None else rows,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "encoding": encoding,
    }


def _drop(
    root: Path,
    feed: str,
    name: str,
    data: bytes,
    encoding: str = "cp932",
    *,
    manifest: dict | None = None,
    with_manifest: bool = True,
) -> Path:
    """Write a data file into inbox/<feed>/ and (unless told otherwise) its manifest after it."""
    folder = root / "inbox" / feed
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    if with_manifest:
        doc = manifest or _manifest(name, data, encoding)
        (folder / f"{name}.manifest.json").write_text(json.dumps(doc, ensure_ascii=False), "utf-8")
    return folder / name


@pytest.fixture(scope="module")
def sftp_source() -> Source:
    return load_registry().source("sftp")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "sftp"
    (folder / "inbox").mkdir(parents=True)
    return folder


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse.duckdb", Lake(tmp_path / "lake"))


@pytest.fixture
def connect(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`with connect(root) as sftp:` serves `root` and yields SFTPHook's paramiko client."""

    @contextmanager
    def serve(root: Path) -> Iterator[paramiko.SFTPClient]:
        from airflow.providers.sftp.hooks.sftp import SFTPHook

        with serve_in_thread(
            root, username=USER, password=PASSWORD, host_key_path=tmp_path / "keys" / "host_key"
        ) as server:
            monkeypatch.setenv(
                "AIRFLOW_CONN_YORISOI_SFTP_TEST",
                json.dumps(
                    {
                        "conn_type": "sftp",
                        "host": server.host,
                        "port": server.port,
                        "login": USER,
                        "password": PASSWORD,
                        "extra": {"host_key": server.host_key_public, "no_host_key_check": False},
                    }
                ),
            )
            hook = SFTPHook(ssh_conn_id="yorisoi_sftp_test", conn_retry_attempts=1)
            assert hook.no_host_key_check is False
            try:
                yield hook.get_conn()
            finally:
                hook.close_conn()

    return serve


def _ingest(warehouse: Warehouse, source: Source, sftp, tmp_path: Path, run_id: str = "run1", **kw) -> DropReport:
    kw.setdefault("now", NOW)
    return ingest_drops(warehouse, source, sftp, run_id=run_id, load_date=LOAD_DATE, workdir=tmp_path / "work", **kw)


def _query(warehouse: Warehouse, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(warehouse.path), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def _count(warehouse: Warehouse, table: str) -> int:
    if not warehouse.path.exists():
        return 0
    exists = _query(
        warehouse,
        "select count(*) from information_schema.tables where table_schema = 'raw' and table_name = ?",
        [f"sftp__{table}"],
    )[0][0]
    return _query(warehouse, f'select count(*) from raw."sftp__{table}"')[0][0] if exists else 0


# --------------------------------------------------------------------------------------------
# The whole XS drop
# --------------------------------------------------------------------------------------------


def test_xs_drop_loads_once_and_a_rerun_finds_only_duplicates(
    synth_xs: Path, tmp_path: Path, connect, warehouse: Warehouse, sftp_source: Source
) -> None:
    root = tmp_path / "sftp"
    shutil.copytree(synth_xs / "sftp", root)
    expected: dict[str, int] = {}
    files = 0
    for table in sftp_source.tables.values():
        folder = root / "inbox" / table.options["feed"]
        for path in folder.glob("*.manifest.json"):
            manifest = json.loads(path.read_text("utf-8"))
            if fnmatchcase(manifest["file"], table.options["pattern"]):
                expected[table.name] = expected.get(table.name, 0) + manifest["rows"]
                files += 1
    assert set(expected) == set(sftp_source.tables)

    with connect(root) as sftp:
        report = _ingest(warehouse, sftp_source, sftp, tmp_path)
    assert not report.alerts()
    assert not report.should_stop_downstream
    assert len(report.by_status("loaded")) == files
    for name, rows in expected.items():
        t = report.tables[name]
        assert t.rejects == 0  # XS has no bad rows
        assert t.rows_loaded == rows, name
        assert _count(warehouse, name) == rows - t.rejects, name
    # Every data file and manifest moved to processed/<feed>/; the inbox is empty.
    assert not [p for p in (root / "inbox").rglob("*") if p.is_file()]
    assert len(list((root / "processed").rglob("*.manifest.json"))) == files
    assert _query(warehouse, "select status, count(*) from raw._files group by 1") == [("loaded", files)]
    members = _query(warehouse, 'select _source_file, _batch_id from raw."sftp__pos_members" limit 1')[0]
    assert members[0] == "members_20261031.csv"
    assert members[1].startswith("pos_members:")  # one batch per file content, whatever the run

    # The partner drops everything again: nothing new loads, counts stay.
    shutil.rmtree(root / "inbox")
    shutil.copytree(synth_xs / "sftp" / "inbox", root / "inbox")
    with connect(root) as sftp:
        again = _ingest(warehouse, sftp_source, sftp, tmp_path, run_id="run2")
    assert len(again.by_status("duplicate")) == files
    assert not again.by_status("loaded")
    assert sum(t.rows_loaded for t in again.tables.values()) == 0
    for name, rows in expected.items():
        assert _count(warehouse, name) == rows, name
    # The second copies did not overwrite the first ones in processed/: they got a suffix.
    assert len(list((root / "processed").rglob("*.manifest.json"))) == 2 * files
    assert (root / "processed" / "pos" / "members_20261031.1.csv").exists()


# --------------------------------------------------------------------------------------------
# Encodings
# --------------------------------------------------------------------------------------------


def test_cp932_round_trips_characters_shift_jis_cannot_read(
    root: Path, tmp_path: Path, connect, warehouse: Warehouse, sftp_source: Source
) -> None:
    names = ["髙橋 ①", "山﨑 ㈱ヨリソイ", "ﾀｶﾊｼ Ⅰ"]
    rows = [
        f'"210000000000{i}","{n}","0312345678","1980/01/0{i + 1}","1000001","","S001","2024/11/05","2024/11/06"'
        for i, n in enumerate(names)
    ]
    data = "\r\n".join([MEMBERS_HEADER, *rows, ""]).encode("cp932")
    with pytest.raises(UnicodeDecodeError):
        data.decode("shift_jis")
    _drop(root, "pos", "members_20261101.csv", data)
    with connect(root) as sftp:
        report = _ingest(warehouse, sftp_source, sftp, tmp_path, tables=["pos_members"])
    assert report.tables["pos_members"].loaded == ["members_20261101.csv"]
    got = _query(
        warehouse, 'select card_no, name_kana, birth_date, joined_on from raw."sftp__pos_members" order by card_no'
    )
    assert [r[1] for r in got] == names
    assert got[0][0] == "2100000000000"  # stays a string: leading digits and zeros intact
    assert got[1][2:] == (date(1980, 1, 2), date(2024, 11, 5))


def test_cp932_decoding_reports_the_byte_offset_and_line(root: Path, tmp_path: Path) -> None:
    good = "\r\n".join([MEMBERS_HEADER, '"1","髙橋","","","","","S001","2024/11/05","2024/11/05"', ""]).encode("cp932")
    bad = good + b'"2","\x81 ","","","","","S001","2024/11/05","2024/11/05"\r\n'
    src = tmp_path / "bad.csv"
    src.write_bytes(bad)
    with pytest.raises(DecodeError) as info:
        decode_to_utf8(src, tmp_path / "out.csv", "cp932")
    assert info.value.line == 3
    assert info.value.offset == len(good) + 5
    assert "line 3" in str(info.value)
    assert f"byte {len(good) + 5}" in str(info.value)


def test_undecodable_file_is_quarantined(
    root: Path, tmp_path: Path, connect, warehouse: Warehouse, sftp_source: Source
) -> None:
    good = "\r\n".join([MEMBERS_HEADER, '"1","髙橋","","","","","S001","2024/11/05","2024/11/05"', ""]).encode("cp932")
    data = good + b'"2","\x81 ","","","","","S001","2024/11/05","2024/11/05"\r\n'
    _drop(root, "pos", "members_20261102.csv", data)
    with connect(root) as sftp:
        report = _ingest(warehouse, sftp_source, sftp, tmp_path, tables=["pos_members"])
    assert report.should_stop_downstream
    reason = report.tables["pos_members"].quarantined["members_20261102.csv"]
    assert "cp932" in reason and "line 3" in reason
    assert (root / "quarantine" / "pos" / "members_20261102.csv.reason.txt").exists()
    assert _count(warehouse, "pos_members") == 0


def test_utf8_bom_is_stripped(root: Path, tmp_path: Path, connect, warehouse: Warehouse, sftp_source: Source) -> None:
    links = "line_user_id,ec_customer_id,linked_at\nU1,7000000000001,2025-04-04T17:50:29+09:00\nU2,,\n"
    _drop(root, "line", "id_links_20261101.csv", links.encode("utf-8-sig"), "utf-8-sig")
    # Registry says plain utf-8, the file has a BOM anyway (Excel): stripped as well.
    events = (
        "event_id,event_at,anonymous_id,ec_customer_id,event_type,product_id,url\n"
        '1,2026-10-01T00:05:42+09:00,a1,,page_view,,"/"\n'
    )
    _drop(root, "web", "events_202610.csv", events.encode("utf-8-sig"), "utf-8-sig")
    with connect(root) as sftp:
        report = _ingest(warehouse, sftp_source, sftp, tmp_path, tables=["line_id_links", "web_events"])
    assert not report.alerts()
    assert report.tables["line_id_links"].rows_loaded == 2
    assert report.tables["web_events"].rows_loaded == 1
    columns = [r[0] for r in _query(warehouse, 'describe raw."sftp__line_id_links"')]
    assert columns[0] == "line_user_id"
    got = _query(warehouse, 'select * from raw."sftp__line_id_links" order by line_user_id')
    assert got[0][0] == "U1"
    assert got[0][1] == "7000000000001"  # identifiers are text
    assert got[0][2] == datetime(2025, 4, 4, 8, 50, 29, tzinfo=UTC)
    assert got[1][1] is None
    assert _query(warehouse, 'select event_id from raw."sftp__web_events"') == [("1",)]


# --------------------------------------------------------------------------------------------
# Column drift, bad rows
# --------------------------------------------------------------------------------------------


def test_column_drift_quarantines_and_stops_downstream(
    root: Path, tmp_path: Path, connect, warehouse: Warehouse, sftp_source: Source
) -> None:
    extra = "\r\n".join(
        [MEMBERS_HEADER + ",ポイント残高", '"1","ﾀｶﾊｼ","","","","","S001","2024/11/05","2024/11/05",120', ""]
    ).encode("cp932")
    _drop(root, "pos", "members_20261103.csv", extra)
    missing_header = SALES_HEADER.removesuffix(",付与ポイント")
    missing = "\r\n".join([missing_header, _sales_row("R1").rsplit(",", 1)[0], ""]).encode("cp932")
    _drop(root, "pos", "sales_202611.csv", missing)
    with connect(root) as sftp:
        report = _ingest(warehouse, sftp_source, sftp, tmp_path, tables=["pos_members", "pos_sales"])

    assert report.should_stop_downstream
    assert {f.file for f in report.column_drift} == {"members_20261103.csv", "sales_202611.csv"}
    assert "extra column(s) ポイント残高" in report.tables["pos_members"].quarantined["members_20261103.csv"]
    assert "missing column(s) 付与ポイント" in report.tables["pos_sales"].quarantined["sales_202611.csv"]
    alerts = report.alerts()
    assert len(alerts) == 2
    assert all("COLUMN DRIFT" in a for a in alerts)
    assert all(a.endswith("(docs/runbook.md#column-drift).") and "What to do: " in a for a in alerts)
    with pytest.raises(DropsStopped, match="column drift"):
        report.raise_for_stop()
    # Files, manifests and reasons are in quarantine/pos/ on the server; nothing was landed.
    q = root / "quarantine" / "pos"
    for name, column in (("members_20261103.csv", "ポイント残高"), ("sales_202611.csv", "付与ポイント")):
        assert (q / name).exists() and (q / f"{name}.manifest.json").exists()
        assert column in (q / f"{name}.reason.txt").read_text("utf-8")
        assert not (root / "inbox" / "pos" / name).exists()
    assert _count(warehouse, "pos_members") == 0
    assert _count(warehouse, "pos_sales") == 0
    assert _query(warehouse, "select distinct status from raw._files") == [("quarantined",)]


def test_describe_drift_names_renamed_and_reordered_columns() -> None:
    assert describe_drift(["a", "b"], ["a", "b"]) is None
    assert "renamed column(s) b -> c" in (describe_drift(["a", "c"], ["a", "b"]) or "")
    assert "another order" in (describe_drift(["b", "a"], ["a", "b"]) or "")


def test_bad_rows_are_rejected_with_line_and_reason_and_the_rest_lands(
    root: Path, tmp_path: Path, connect, warehouse: Warehouse, sftp_source: Source
) -> None:
    members = "\r\n".join(
        [
            MEMBERS_HEADER,
            '"1","ﾀｶﾊｼ","","1984/09/10","","","S001","2024/11/05","2024/11/05"',
            '"2","ﾔﾏｻﾞｷ","","1984/13/45","","","S001","2024/11/05","2024/11/05"',  # line 3: bad date
            '"3","ｽｽﾞｷ","","","","","S001","2024/11/05","2024/11/05"',
            "",
        ]
    ).encode("cp932")
    _drop(root, "pos", "members_20261104.csv", members)
    sales = "\r\n".join(
        [
            SALES_HEADER,
            _sales_row("R1", store="㈱ヨリソイ\r\n横浜店"),  # lines 2-3: a quoted line break
            _sales_row("R2", quantity="abc"),  # line 4: not a number
            _sales_row("R3"),
            _sales_row("R4").rsplit(",", 2)[0],  # line 6: two fields short
            _sales_row("", 1),  # line 7: empty primary key
            _sales_row("R6"),
            "",
        ]
    ).encode("cp932")
    _drop(root, "pos", "sales_202611.csv", sales)
    with connect(root) as sftp:
        report = _ingest(warehouse, sftp_source, sftp, tmp_path, tables=["pos_members", "pos_sales"])

    assert not report.should_stop_downstream
    assert report.tables["pos_members"].rows_loaded == 2
    assert report.tables["pos_members"].rejects == 1
    assert report.tables["pos_sales"].rows_loaded == 3
    assert report.tables["pos_sales"].rejects == 3
    rejects = _query(
        warehouse,
        "select table_name, source_file, line, reason, raw_line, batch_id, source from raw._rejects "
        "order by table_name, line",
    )
    by_line = {(r[0], r[2]): r for r in rejects}
    assert sorted(by_line) == [("pos_members", 3), ("pos_sales", 4), ("pos_sales", 6), ("pos_sales", 7)]
    bad_date = by_line[("pos_members", 3)]
    assert bad_date[1] == "members_20261104.csv"
    assert "生年月日 (birth_date)" in bad_date[3] and "1984/13/45" in bad_date[3] and "%Y/%m/%d" in bad_date[3]
    assert bad_date[4].startswith('"2","ﾔﾏｻﾞｷ"')
    assert bad_date[5].startswith("pos_members:") and bad_date[6] == "sftp"
    assert (
        "数量 (quantity)" in by_line[("pos_sales", 4)][3] and "'abc' is not an integer" in by_line[("pos_sales", 4)][3]
    )
    assert "expected 15, found 13" in by_line[("pos_sales", 6)][3]
    assert "empty primary key: 取引番号 (receipt_no)" in by_line[("pos_sales", 7)][3]
    assert by_line[("pos_sales", 7)][4] == _sales_row("", 1)
    landed = _query(warehouse, 'select receipt_no, store_name from raw."sftp__pos_sales" order by 1')
    assert landed == [("R1", "㈱ヨリソイ\r\n横浜店"), ("R3", "㈱ヨリソイ 横浜店"), ("R6", "㈱ヨリソイ 横浜店")]
    assert [r[0] for r in _query(warehouse, 'select card_no from raw."sftp__pos_members" order by 1')] == ["1", "3"]


# --------------------------------------------------------------------------------------------
# Completeness, duplicates, reruns
# --------------------------------------------------------------------------------------------


def test_truncated_file_and_wrong_row_count_are_quarantined(
    root: Path, tmp_path: Path, connect, warehouse: Warehouse, sftp_source: Source
) -> None:
    _drop(
        root,
        "pos",
        "sales_202609.csv",
        SALES[: len(SALES) - 40],
        manifest=_manifest("sales_202609.csv", SALES, "cp932"),
    )
    _drop(root, "pos", "sales_202610.csv", SALES, manifest=_manifest("sales_202610.csv", SALES, "cp932", rows=5))
    changed = SALES.replace(b'"R2"', b'"R9"')  # same size, other content
    _drop(root, "pos", "sales_202608.csv", changed, manifest=_manifest("sales_202608.csv", SALES, "cp932"))
    with connect(root) as sftp:
        report = _ingest(warehouse, sftp_source, sftp, tmp_path, tables=["pos_sales"])
    quarantined = report.tables["pos_sales"].quarantined
    assert quarantined["sales_202609.csv"].startswith("truncated file")
    assert "row count mismatch: manifest says 5 rows, the file has 4" in quarantined["sales_202610.csv"]
    assert quarantined["sales_202608.csv"].startswith("file does not match its manifest: SHA-256")
    assert report.should_stop_downstream and not report.column_drift
    assert len(report.alerts()) == 3
    for name in quarantined:
        assert (root / "quarantine" / "pos" / name).exists()
        assert (root / "quarantine" / "pos" / f"{name}.reason.txt").exists()
    assert (root / "quarantine" / "pos" / "sales_202609.csv").read_bytes() == SALES[: len(SALES) - 40]
    assert _count(warehouse, "pos_sales") == 0


def test_same_content_under_another_name_loads_once(
    root: Path, tmp_path: Path, connect, warehouse: Warehouse, sftp_source: Source
) -> None:
    _drop(root, "pos", "sales_202610.csv", SALES)
    _drop(root, "pos", "sales_202610_resend.csv", SALES)
    with connect(root) as sftp:
        first = _ingest(warehouse, sftp_source, sftp, tmp_path, tables=["pos_sales"])
        _drop(root, "pos", "sales_202610_again.csv", SALES)
        second = _ingest(warehouse, sftp_source, sftp, tmp_path, run_id="run2", tables=["pos_sales"])
    assert first.tables["pos_sales"].loaded == ["sales_202610.csv"]
    assert first.tables["pos_sales"].duplicates == ["sales_202610_resend.csv"]
    assert first.tables["pos_sales"].rows_loaded == 4
    assert second.tables["pos_sales"].duplicates == ["sales_202610_again.csv"]
    assert _count(warehouse, "pos_sales") == 4
    assert sorted(p.name for p in (root / "processed" / "pos").glob("*.csv")) == [
        "sales_202610.csv",
        "sales_202610_again.csv",
        "sales_202610_resend.csv",
    ]
    assert not first.alerts() and not first.should_stop_downstream


def test_rerun_after_a_crash_between_landing_and_the_move_does_not_duplicate(
    root: Path, tmp_path: Path, connect, warehouse: Warehouse, sftp_source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    _drop(root, "pos", "sales_202610.csv", SALES)

    def crash(*args, **kwargs):
        raise ConnectionError("worker lost")

    with connect(root) as sftp:
        with monkeypatch.context() as patch:
            patch.setattr(Warehouse, "record_file", crash)
            with pytest.raises(ConnectionError):
                _ingest(warehouse, sftp_source, sftp, tmp_path, tables=["pos_sales"])
        assert _count(warehouse, "pos_sales") == 4  # landed, but neither recorded nor moved
        assert (root / "inbox" / "pos" / "sales_202610.csv").exists()
        report = _ingest(warehouse, sftp_source, sftp, tmp_path, run_id="run2", tables=["pos_sales"])
    assert report.tables["pos_sales"].loaded == ["sales_202610.csv"]
    assert _count(warehouse, "pos_sales") == 4
    assert _query(warehouse, 'select distinct _batch_id from raw."sftp__pos_sales"')[0][0].startswith("pos_sales:")


def test_file_without_manifest_waits_then_times_out(
    root: Path, tmp_path: Path, connect, warehouse: Warehouse, sftp_source: Source
) -> None:
    old = _drop(root, "pos", "sales_202609.csv", SALES, with_manifest=False)
    new = _drop(root, "pos", "sales_202610.csv", SALES, with_manifest=False)
    os.utime(old, (time.time(), (NOW - timedelta(hours=7)).timestamp()))
    os.utime(new, (time.time(), (NOW - timedelta(hours=1)).timestamp()))
    with connect(root) as sftp:
        report = _ingest(warehouse, sftp_source, sftp, tmp_path, tables=["pos_sales"])
        t = report.tables["pos_sales"]
        assert t.timed_out == ["sales_202609.csv"]
        assert t.waiting == ["sales_202610.csv"]
        assert not report.should_stop_downstream
        (alert,) = report.alerts()
        assert "TIMEOUT" in alert and "sales_202609.csv" in alert and "no manifest 7h" in alert
        assert alert.endswith("(docs/runbook.md#timeout).")
        assert sorted(p.name for p in (root / "inbox" / "pos").iterdir()) == ["sales_202609.csv", "sales_202610.csv"]
        assert new.read_bytes() == SALES
        assert _count(warehouse, "pos_sales") == 0
        # The manifest arrives: the file loads.
        (new.parent / f"{new.name}.manifest.json").write_text(json.dumps(_manifest(new.name, SALES, "cp932")))
        later = _ingest(warehouse, sftp_source, sftp, tmp_path, run_id="run2", tables=["pos_sales"])
    assert later.tables["pos_sales"].loaded == ["sales_202610.csv"]
    assert _count(warehouse, "pos_sales") == 4


# --------------------------------------------------------------------------------------------
# Bad data cannot wedge the feed (docs/reliability.md #18)
# --------------------------------------------------------------------------------------------

REQUESTS_HEADER = "受付番号,受付日時,顧客コード,氏名,電話番号,メールアドレス,対象チャネル,依頼種別"


def _request_row(no: str, note: str = "山田 花子") -> str:
    return f'"{no}","2026/10/30 10:00:00","C001","{note}","","","email","配信停止"'


def test_keys_null_repeated_or_with_control_characters_are_rejected_and_kana_is_checked(
    root: Path, tmp_path: Path, connect, warehouse: Warehouse, sftp_source: Source
) -> None:
    members = "\r\n".join(
        [
            MEMBERS_HEADER,
            '"1","ﾀｶﾊｼ","","","","old@example.jp","S001","2024/11/05","2024/11/05"',  # line 2: loses to line 6
            '"2\x01","ﾔﾏｻﾞｷ","","","","","S001","2024/11/05","2024/11/05"',  # line 3: control character
            '" ","ｽｽﾞｷ","","","","","S001","2024/11/05","2024/11/05"',  # line 4: blank key
            '"3","山田","","","","","S001","2024/11/05","2024/11/05"',  # line 5: kanji in the kana column
            '"1","ﾀｶﾊｼ","","","","new@example.jp","S001","2024/11/05","2024/11/05"',
            "",
        ]
    ).encode("cp932")
    _drop(root, "pos", "members_20261104.csv", members)
    with connect(root) as sftp:
        report = _ingest(warehouse, sftp_source, sftp, tmp_path, tables=["pos_members"])
    assert not report.should_stop_downstream
    assert _query(warehouse, 'select card_no, email from raw."sftp__pos_members" order by 1') == [
        ("1", "new@example.jp"),
        ("3", None),
    ]
    rejects = _query(warehouse, "select line, reason from raw._rejects order by line")
    assert rejects == [
        (2, "duplicate key 会員番号 (card_no)='1': line 6 has the same key and is kept"),
        (3, "control character in primary key: 会員番号 (card_no)='2\\x01'"),
        (4, "empty primary key: 会員番号 (card_no)"),
    ]
    assert _query(warehouse, "select line, key, reason from raw._flags") == [
        (5, "会員番号 (card_no)='3'", "not kana: a kana column holds characters other than kana (mojibake?)")
    ]


def test_utf8_lines_in_a_cp932_file_quarantine_it(
    root: Path, tmp_path: Path, connect, warehouse: Warehouse, sftp_source: Source
) -> None:
    good = "\r\n".join([REQUESTS_HEADER, _request_row("Q1"), ""]).encode("cp932")
    utf8_line = _request_row("Q3", "ヤマダ タロウ").encode("utf-8")
    assert utf8_line.decode("cp932")  # valid CP932 too: only mojibake, no decoding error
    mixed = "\r\n".join([REQUESTS_HEADER, _request_row("Q2"), ""]).encode("cp932") + utf8_line + b"\r\n"
    _drop(root, "callcenter", "requests_202610.csv", mixed)
    _drop(root, "callcenter", "requests_202611.csv", good)
    with connect(root) as sftp:
        report = _ingest(warehouse, sftp_source, sftp, tmp_path, tables=["callcenter_requests"])
    [quarantined] = report.by_status("quarantined")
    assert quarantined.file == "requests_202610.csv"
    assert "mixed encodings: line 3 is UTF-8 text in a cp932 file" in quarantined.reason
    assert [f.file for f in report.by_status("loaded")] == ["requests_202611.csv"]
    assert _query(warehouse, 'select request_no from raw."sftp__callcenter_requests"') == [("Q1",)]


def test_a_field_over_the_csv_limit_quarantines_its_file_and_the_feed_goes_on(
    root: Path, tmp_path: Path, connect, warehouse: Warehouse, sftp_source: Source
) -> None:
    # An unclosed quote in the header: the csv module reads the whole file as one field, over its limit.
    broken = ('"' + REQUESTS_HEADER + "\r\n" + _request_row("Q5", "あ" * 200_000) + "\r\n").encode("cp932")
    # A field of 600 kB in a row: rejected with its line; the file's other rows land.
    huge = "\r\n".join([REQUESTS_HEADER, _request_row("Q7", "あ" * 1_000_000), _request_row("Q8"), ""]).encode("cp932")
    opt_outs = "\r\n".join([REQUESTS_HEADER, _request_row("Q1"), ""]).encode("cp932")
    _drop(
        root, "callcenter", "requests_202609.csv", broken, manifest=_manifest("requests_202609.csv", broken, "cp932", 1)
    )
    _drop(root, "callcenter", "requests_202610.csv", huge, manifest=_manifest("requests_202610.csv", huge, "cp932", 2))
    _drop(root, "callcenter", "requests_202611.csv", opt_outs)
    with connect(root) as sftp:
        report = _ingest(warehouse, sftp_source, sftp, tmp_path, tables=["callcenter_requests"])
    [quarantined] = report.by_status("quarantined")
    assert quarantined.file == "requests_202609.csv"
    assert "the header line cannot be read (field larger than field limit" in quarantined.reason
    assert (root / "quarantine" / "callcenter" / "requests_202609.csv.reason.txt").exists()
    assert [f.file for f in report.by_status("loaded")] == ["requests_202610.csv", "requests_202611.csv"]
    assert _query(warehouse, 'select request_no from raw."sftp__callcenter_requests" order by 1') == [("Q1",), ("Q8",)]
    [(line, reason)] = _query(warehouse, "select line, reason from raw._rejects")
    assert line == 2 and "maximum line size" in reason.lower()


# --------------------------------------------------------------------------------------------
# Money in the source's currency
# --------------------------------------------------------------------------------------------


def _money_source(tmp_path: Path, money: dict | None) -> Source:
    """The default registry's SFTP source with the POS amounts typed `money`, in `money`'s currency."""
    doc = yaml.safe_load(DEFAULT_REGISTRY.read_text("utf-8"))
    sftp = doc["sources"]["sftp"]
    if money is not None:
        sftp["money"] = money
    for name in ("unit_price", "list_price", "amount"):
        sftp["tables"]["pos_sales"]["columns"][name]["type"] = "money"
    path = tmp_path / "registry.yml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), "utf-8")
    return load_registry(path).source("sftp")


def _priced_row(receipt: str, amount: str) -> str:
    return (
        f'"{receipt}",1,"S003","横浜店","2026/10/01 10:00:00","売上","","","YS-00001",1,{amount},{amount},{amount},0,10'
    )


def test_money_columns_land_in_the_minor_unit_and_more_decimals_are_rejected_not_rounded(
    root: Path, tmp_path: Path, connect, warehouse: Warehouse
) -> None:
    source = _money_source(tmp_path, {"currency": "USD", "minor_unit": 2})
    sales = "\r\n".join(
        [
            SALES_HEADER,
            _priced_row("R1", "12.50"),
            _priced_row("R2", "12.345"),  # line 3: a tenth of a cent
            _priced_row("R3", "abc"),  # line 4: not an amount
            _priced_row("R4", "1000"),
            "",
        ]
    ).encode("cp932")
    _drop(root, "pos", "sales_202611.csv", sales)
    with connect(root) as sftp:
        report = _ingest(warehouse, source, sftp, tmp_path, tables=["pos_sales"])

    assert report.tables["pos_sales"].rows_loaded == 2
    landed = _query(warehouse, 'select receipt_no, unit_price, amount from raw."sftp__pos_sales" order by 1')
    assert landed == [("R1", Decimal("12.50"), Decimal("12.50")), ("R4", Decimal("1000.00"), Decimal("1000.00"))]
    types = dict(
        _query(
            warehouse,
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'raw' and table_name = 'sftp__pos_sales'",
        )
    )
    assert types["amount"] == "DECIMAL(18,2)" and types["quantity"] == "BIGINT"
    reasons = dict(_query(warehouse, "select line, reason from raw._rejects order by line"))
    assert set(reasons) == {3, 4}
    assert "金額 (amount): 12.345 has more than 2 decimal places" in reasons[3]
    assert "'abc' is not an amount with at most 2 decimal places" in reasons[4]


def test_money_in_whole_yen_rejects_a_fraction(root: Path, tmp_path: Path, connect, warehouse: Warehouse) -> None:
    source = _money_source(tmp_path, None)  # JPY, minor unit 0: the default
    sales = "\r\n".join([SALES_HEADER, _priced_row("R1", "1280"), _priced_row("R2", "1280.5"), ""]).encode("cp932")
    _drop(root, "pos", "sales_202611.csv", sales)
    with connect(root) as sftp:
        _ingest(warehouse, source, sftp, tmp_path, tables=["pos_sales"])

    assert _query(warehouse, 'select receipt_no, amount from raw."sftp__pos_sales"') == [("R1", 1280)]
    [(line, reason)] = _query(warehouse, "select line, reason from raw._rejects")
    assert line == 3 and "1280.5 has more than 0 decimal places" in reason
