"""Descriptions the document supplies itself, in English and Japanese, for columns no YAML
describes because Yorisoi's own code creates them: the loader's columns on every raw table and its
bookkeeping tables (yorisoi.sources.landing), and dbt's standard snapshot columns."""

from __future__ import annotations

from typing import Any

# Columns the loader (yorisoi.sources.landing) adds to every raw table, and its bookkeeping tables.
LOADER_COLUMNS: dict[str, tuple[str, str]] = {
    "_loaded_at": ("When the row was last upserted into the warehouse.", "行が最後にウェアハウスへ取り込まれた日時。"),
    "_source_file": (
        "The dropped file (CSV) the row came from; empty for the shop API and the OMS database.",
        "行の取込元となった連携ファイル（CSV）名。EC API・OMS データベースからの行では空。",
    ),
    "_batch_id": ("The ingest run (batch) that loaded the row.", "行を取り込んだ取込実行（バッチ）の ID。"),
}
LOADER_TABLES: dict[str, dict[str, Any]] = {
    "_watermarks": {
        "description": (
            "Each raw table's watermark: how far incremental ingestion has read.",
            "raw テーブルごとの差分取込の到達点（ウォーターマーク）。",
        ),
        "primary_key": ["source", "table_name"],
        "columns": {
            "source": ("The source in the registry.", "レジストリ上の連携元。"),
            "table_name": ("The table in the registry.", "レジストリ上のテーブル。"),
            "watermark": ("The highest watermark value loaded.", "取り込んだウォーターマークの最大値。"),
            "batch_id": ("The run that moved it.", "それを更新した取込実行。"),
            "updated_at": ("When it moved.", "更新日時。"),
        },
    },
    "_rejects": {
        "description": (
            "Rows a file drop could not parse, kept for the data steward with the line as received.",
            "ファイル連携で解析できなかった行。受け取ったままの行をデータスチュワード確認用に保持。",
        ),
        "primary_key": [],
        "columns": {
            "batch_id": ("The run that rejected the row.", "行を除外した取込実行。"),
            "source": ("The source in the registry.", "レジストリ上の連携元。"),
            "table_name": ("The table the row was meant for.", "取込先のテーブル。"),
            "source_file": ("The file the row came in.", "行が含まれていたファイル。"),
            "line": ("Its line number in that file.", "ファイル内の行番号。"),
            "reason": ("Why it was rejected.", "除外理由。"),
            "raw_line": (
                "The line as received (may hold personal data).",
                "受け取ったままの行（個人情報を含むことがある）。",
            ),
            "rejected_at": ("When it was rejected.", "除外日時。"),
        },
        "pii": {
            "raw_line": (
                "kept in the warehouse only (raw schema); never copied to the analytics database",
                "ウェアハウス（raw スキーマ）にのみ保持し、分析用データベースには複製しない",
            )
        },
    },
    "_files": {
        "description": (
            "Every file drop seen, by content hash: loaded, skipped as a duplicate, or quarantined, and why.",
            "受け取ったファイル（内容のハッシュ単位）と、取込済・重複・隔離の区分と理由。",
        ),
        "primary_key": ["sha256"],
        "columns": {
            "sha256": ("SHA-256 of the file's content.", "ファイル内容の SHA-256。"),
            "source": ("The source in the registry.", "レジストリ上の連携元。"),
            "feed": ("The feed (pos, callcenter, line, web, esp).", "フィード（pos、callcenter、line、web、esp）。"),
            "file_name": ("The file's name as dropped.", "ファイル名。"),
            "rows": ("Data rows in the file.", "データ行数。"),
            "status": (
                "loaded, duplicate or quarantined.",
                "取込済（loaded）・重複（duplicate）・隔離（quarantined）。",
            ),
            "reason": ("Why it was not loaded, if so.", "取り込まなかった場合の理由。"),
            "batch_id": ("The run that handled it.", "処理した取込実行。"),
            "recorded_at": ("When it was recorded.", "記録日時。"),
        },
    },
}
# dbt's own snapshot columns.
SNAPSHOT_COLUMNS: dict[str, tuple[str, str]] = {
    "dbt_scd_id": ("dbt: unique ID of this version of the row.", "dbt：この版の行の一意な ID。"),
    "dbt_updated_at": ("dbt: when this version was recorded.", "dbt：この版を記録した日時。"),
    "dbt_valid_from": ("dbt: when this version became current.", "dbt：この版が有効になった日時。"),
    "dbt_valid_to": ("dbt: when it was superseded (null: current).", "dbt：次の版に置き換わった日時（null は現行）。"),
    "dbt_is_deleted": ("dbt: whether the row was deleted in the source.", "dbt：元のテーブルで削除されたか。"),
}
