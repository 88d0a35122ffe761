"""Deliberately bad drops for the demo and the ingestion tests, with the outcome each must have.

Each defect is a file in the SFTP inbox that a careful pipeline must catch; `truth/defects.json`
says what should happen to it. None of them may change the true row counts: quarantined files
land nothing, duplicates land nothing new, and the bad-row file repeats rows that already exist
(its good rows upsert onto themselves; its bad rows go to the rejects table).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .writers import write_manifest_for


def _lines(path: Path, encoding: str) -> list[str]:
    return path.read_bytes().decode(encoding).splitlines()


def _write(path: Path, lines: list[str], encoding: str, eol: str) -> bytes:
    data = (eol.join(lines) + eol).encode(encoding)
    path.write_bytes(data)
    return data


def add_defects(out: Path, as_of: int) -> list[dict]:
    """Write the defect files next to the good drops and describe them in truth/defects.json."""
    inbox = out / "sftp" / "inbox"
    pos = inbox / "pos"
    sales = sorted(pos.glob("sales_*.csv"))
    if not sales:
        return []
    last = sales[-1]
    lines = _lines(last, "cp932")
    header, body = lines[0], lines[1:]
    defects: list[dict] = []

    # 1. The same content under another name (a resend): must load once.
    dup = pos / last.name.replace("sales_", "sales_resend_")
    dup.write_bytes(last.read_bytes())
    write_manifest_for(dup, rows=len(body), encoding="cp932")
    defects.append(
        {
            "file": f"pos/{dup.name}",
            "defect": "duplicate content under a new name",
            "expect": "not loaded again (same SHA-256 as an earlier file)",
        }
    )

    # 2. An extra column (column drift): quarantined, nothing lands.
    extra = pos / last.name.replace("sales_", "sales_extra_column_")
    _write(extra, [header + ',"レジ番号"', *(f'{row},"03"' for row in body[:20])], "cp932", "\r\n")
    write_manifest_for(extra, rows=20, encoding="cp932")
    defects.append(
        {
            "file": f"pos/{extra.name}",
            "defect": "extra column レジ番号",
            "expect": "quarantined with a reason; downstream stopped",
        }
    )

    # 3. A missing column: quarantined.
    members = next(pos.glob("members_*.csv"))
    m_lines = _lines(members, "cp932")
    cut = [",".join(line.split(",")[:3] + line.split(",")[4:]) for line in m_lines[:21]]
    missing = pos / members.name.replace("members_", "members_missing_column_")
    _write(missing, cut, "cp932", "\r\n")
    write_manifest_for(missing, rows=20, encoding="cp932")
    defects.append(
        {
            "file": f"pos/{missing.name}",
            "defect": "missing column 生年月日",
            "expect": "quarantined with a reason; downstream stopped",
        }
    )

    # 4. A truncated transfer: the manifest describes the whole file, the bytes stop early.
    trunc = pos / last.name.replace("sales_", "sales_truncated_")
    full = _write(trunc, [header, *body[:50]], "cp932", "\r\n")
    write_manifest_for(trunc, rows=50, encoding="cp932")
    trunc.write_bytes(full[: len(full) * 2 // 3])
    defects.append(
        {
            "file": f"pos/{trunc.name}",
            "defect": "truncated file (checksum mismatch)",
            "expect": "quarantined with a reason",
        }
    )

    # 5. Bad rows: rows that already exist, one with an impossible date and one with text in a
    # number column. Good rows upsert onto themselves; the two bad rows go to rejects.
    bad = pos / last.name.replace("sales_", "sales_corrected_")
    rows = body[:10]
    cols = rows[2].split(",")
    cols[4] = '"2026/13/45 25:61:00"'
    rows[2] = ",".join(cols)
    cols = rows[5].split(",")
    cols[9] = '"二"'
    rows[5] = ",".join(cols)
    _write(bad, [header, *rows], "cp932", "\r\n")
    write_manifest_for(bad, rows=10, encoding="cp932")
    defects.append(
        {
            "file": f"pos/{bad.name}",
            "defect": "a bad timestamp (line 4) and a non-numeric quantity (line 7)",
            "expect": "8 rows load (already present), 2 rows rejected with line and reason",
        }
    )

    # 6. A data file whose manifest never came: waits, then raises a timeout alert.
    orphan = inbox / "callcenter" / "requests_unconfirmed.csv"
    requests = sorted((inbox / "callcenter").glob("requests_*.csv"))
    if requests:
        orphan.write_bytes(requests[-1].read_bytes())
        os.utime(orphan, (as_of, as_of))  # it arrived at the end of the window and never got its manifest
        defects.append(
            {
                "file": f"callcenter/{orphan.name}",
                "defect": "no manifest",
                "expect": "not loaded; a timeout alert once older than max_wait",
            }
        )

    (out / "truth" / "defects.json").write_text(json.dumps(defects, ensure_ascii=False, indent=1) + "\n", "utf-8")
    return defects
