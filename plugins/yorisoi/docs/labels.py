"""The fixed vocabulary of the data-definition document in Japanese and English.

Descriptions written in the dbt YAML and the registry appear as written; everything the document
itself says (headings, labels, column headers, update methods and frequencies) comes from here.
"""

from __future__ import annotations

LANGUAGES = ("ja", "en")

LABELS: dict[str, dict[str, str]] = {
    # document
    "title": {"ja": "データ項目定義書", "en": "Data definition document"},
    "subtitle": {
        "ja": "Yorisoi 顧客データ基盤：データベース・連携キー・テーブル・項目・更新方法・更新頻度",
        "en": "Yorisoi customer data platform: databases, join keys, tables, columns, update method and frequency",
    },
    "generated_at": {"ja": "生成日時", "en": "Generated at"},
    "generated_from": {"ja": "生成元", "en": "Generated from"},
    "generated_note": {
        "ja": "この文書は自動生成です（手で編集しないでください）。ソースレジストリ、dbt の manifest / catalog、"
        "Great Expectations のスイートから作られ、マートが更新されるたびに DAG build_data_definition が作り直します。",
        "en": "This document is generated (do not edit it by hand) from the source registry, the dbt manifest and "
        "catalog, and the Great Expectations suites; the DAG build_data_definition rebuilds it after every "
        "mart build.",
    },
    "other_language": {"ja": "English version", "en": "日本語版"},
    "contents": {"ja": "目次", "en": "Contents"},
    "workbook": {"ja": "Excel 版", "en": "Excel workbook"},
    "dbt_docs": {"ja": "dbt ドキュメント（静的版）", "en": "dbt docs (static)"},
    "json_model": {"ja": "機械可読版 (JSON)", "en": "Machine-readable (JSON)"},
    # the five items
    "s1": {"ja": "1. データベースとソースの数", "en": "1. Number of databases and sources"},
    "s2": {"ja": "2. 連携キー（テーブルの結合）と ER 図", "en": "2. How they link: join keys and ER diagram"},
    "s3": {"ja": "3. テーブルと項目", "en": "3. Tables and columns"},
    "s4": {"ja": "4. 更新方法（自動／手動）", "en": "4. Update method (automatic / manual)"},
    "s5": {"ja": "5. 更新頻度", "en": "5. Update frequency"},
    "s6": {
        "ja": "6. データリネージ（ソース → マート → オーディエンス → 配信先）",
        "en": "6. Lineage (source → mart → audience → destination)",
    },
    "s7": {"ja": "7. データ品質チェック", "en": "7. Data quality checks"},
    "s8": {"ja": "8. 未記載・要対応事項", "en": "8. Gaps to resolve"},
    # overview
    "overview": {"ja": "概要", "en": "Overview"},
    "item": {"ja": "項目", "en": "Item"},
    "value": {"ja": "値", "en": "Value"},
    "n_source_systems": {"ja": "連携元システム数", "en": "Source systems"},
    "n_source_tables": {"ja": "連携テーブル数", "en": "Source tables"},
    "n_databases": {"ja": "データベース数", "en": "Databases"},
    "n_schemas": {"ja": "スキーマ数", "en": "Schemas"},
    "n_tables": {"ja": "テーブル数", "en": "Tables"},
    "n_columns": {"ja": "項目数", "en": "Columns"},
    "n_pii_columns": {"ja": "個人情報項目数", "en": "Personal-data columns"},
    "n_links": {"ja": "連携キー数", "en": "Join keys"},
    "n_checks": {"ja": "品質チェック数", "en": "Quality checks"},
    "n_audiences": {"ja": "オーディエンス数", "en": "Audiences"},
    # sources
    "sources": {"ja": "連携元システム", "en": "Source systems"},
    "source": {"ja": "連携元", "en": "Source"},
    "system": {"ja": "システム", "en": "System"},
    "kind": {"ja": "連携種別", "en": "Kind"},
    "connection": {"ja": "接続 (Airflow connection)", "en": "Connection (Airflow connection)"},
    "schedule": {"ja": "連携スケジュール", "en": "Schedule"},
    "ingest_dag": {"ja": "取込 DAG", "en": "Ingest DAG"},
    "kind_api": {"ja": "API", "en": "API"},
    "kind_database": {"ja": "データベース", "en": "Database"},
    "kind_files": {"ja": "ファイル (SFTP)", "en": "Files (SFTP)"},
    "kind_store": {"ja": "アクティベーション・ストア", "en": "Activation store"},
    "kind_messaging": {"ja": "配信チャネルの報告 (API)", "en": "Messaging channel reports (API)"},
    "arrival": {"ja": "データ到着の目安（dbt ソース定義）", "en": "Expected arrival (dbt source meta)"},
    "watermark": {"ja": "差分キー", "en": "Watermark"},
    # databases
    "databases": {"ja": "データベース", "en": "Databases"},
    "database": {"ja": "データベース", "en": "Database"},
    "file": {"ja": "ファイル", "en": "File"},
    "role": {"ja": "役割", "en": "Role"},
    "schemas": {"ja": "スキーマ", "en": "Schemas"},
    "schema": {"ja": "スキーマ", "en": "Schema"},
    "role_warehouse": {
        "ja": "データウェアハウス：取込データ、変換、マート（個人情報を含む）",
        "en": "The warehouse: raw data, transformations and marts (holds personal data)",
    },
    "role_analytics": {
        "ja": "アナリスト用データベース：生の個人情報を含まないマート（DuckDB に GRANT がないため別ファイル）",
        "en": "The analysts' database: marts without raw personal data (a separate file: DuckDB has no GRANT)",
    },
    "layer": {"ja": "層", "en": "Layer"},
    "layer_raw": {"ja": "取込 (raw)", "en": "raw"},
    "layer_staging": {"ja": "標準化 (staging)", "en": "staging"},
    "layer_intermediate": {"ja": "中間 (intermediate)", "en": "intermediate"},
    "layer_marts": {"ja": "マート (marts)", "en": "marts"},
    "layer_analytics": {"ja": "分析用 (analytics)", "en": "analytics"},
    "layer_reference": {"ja": "参照データ (reference)", "en": "reference"},
    "layer_snapshots": {"ja": "履歴 (snapshots)", "en": "snapshots"},
    "layer_desc_raw": {
        "ja": "連携元から取り込んだままのデータ（主キーで upsert、取込メタ情報付き）",
        "en": "Data as landed from the sources (upserted by primary key, with load metadata)",
    },
    "layer_desc_staging": {
        "ja": "連携元テーブルごとに項目名・型・表記を標準化（NFKC、E.164、カナ、郵便番号）",
        "en": "One model per source table, names, types and notation normalised (NFKC, E.164, kana, postal codes)",
    },
    "layer_desc_intermediate": {
        "ja": "名寄せ（照合キー、リンク、クラスタ、人物 ID）、同意イベント、購買順序",
        "en": "Identity resolution (match keys, links, clusters, person IDs), consent events, purchase sequences",
    },
    "layer_desc_marts": {
        "ja": "利用者が読むテーブル：顧客、注文、同意、配信可能顧客、セグメント、継続率、トリガー、4R",
        "en": "What people use: customers, orders, consent, deliverable customers, segments, retention, triggers, 4R",
    },
    "layer_desc_analytics": {
        "ja": "アナリスト向け：生の個人情報を除いたマート",
        "en": "For analysts: marts without raw personal data",
    },
    "layer_desc_reference": {
        "ja": "参照データとデータスチュワードのリスト（dbt seed、CSV を人が編集）",
        "en": "Reference data and data stewards' lists (dbt seeds: CSV files people edit)",
    },
    "layer_desc_snapshots": {
        "ja": "ゴールデンレコードの履歴（SCD タイプ 2）",
        "en": "History of the golden record (SCD type 2)",
    },
    # links
    "links": {"ja": "連携キー", "en": "Join keys"},
    "from_table": {"ja": "結合元テーブル", "en": "From table"},
    "from_columns": {"ja": "結合元項目", "en": "From columns"},
    "to_table": {"ja": "結合先テーブル", "en": "To table"},
    "to_columns": {"ja": "結合先項目", "en": "To columns"},
    "link_kind": {"ja": "種別", "en": "Kind"},
    "link_primary_key": {"ja": "主キーの引き継ぎ（raw → staging）", "en": "Primary key carried (raw → staging)"},
    "link_identity_record": {"ja": "名寄せレコード（record_key）", "en": "Identity record (record_key)"},
    "link_identity_bridge": {
        "ja": "ID ブリッジ（record_key → person_id）",
        "en": "Identity bridge (record_key → person_id)",
    },
    "link_relationship": {
        "ja": "参照整合性（dbt relationships テスト）",
        "en": "Referential integrity (dbt relationships test)",
    },
    "link_shared_key": {"ja": "共通キー（同名項目、テストなし）", "en": "Shared key (same column name, untested)"},
    "identity_rules": {
        "ja": "名寄せルール（異なる連携元のレコードを同一人物に結び付ける条件）",
        "en": "Identity rules (what links records of different systems to one person)",
    },
    "rule": {"ja": "ルール", "en": "Rule"},
    "priority": {"ja": "優先度", "en": "Priority"},
    "keys": {"ja": "照合キー", "en": "Match keys"},
    "identity_path": {
        "ja": "連携元のレコードは staging で標準化され、int_identity_records で `<連携元>:<連携元 ID>` の record_key を"
        "持ち、bridge_customer_identities で person_id（人物 ID）に結び付きます。各マートは person_id で "
        "dim_customers と結合します。",
        "en": "Source records are normalised in staging, get a record_key `<source>:<source id>` in "
        "int_identity_records, and are tied to a person_id in bridge_customer_identities; every mart joins "
        "dim_customers by person_id.",
    },
    "erd": {"ja": "ER 図", "en": "ER diagram"},
    "erd_note": {
        "ja": "連携元 → raw → staging → 名寄せ → マート。線は結合キー（ラベルは項目名）。"
        "共通キー（テストなし）の結合は下の表のみ。",
        "en": "Sources → raw → staging → identity → marts. Lines are join keys (labelled with the column); "
        "untested shared keys are listed in the table only.",
    },
    "mermaid": {"ja": "Mermaid 形式（レンダラーがある場合）", "en": "Mermaid source (for a renderer)"},
    # tables and columns
    "tables": {"ja": "テーブル一覧", "en": "Tables"},
    "table": {"ja": "テーブル", "en": "Table"},
    "resource": {"ja": "種別", "en": "Type"},
    "resource_source": {"ja": "連携元テーブル", "en": "source table"},
    "resource_model": {"ja": "dbt モデル", "en": "dbt model"},
    "resource_seed": {"ja": "dbt シード（CSV）", "en": "dbt seed (CSV)"},
    "resource_snapshot": {"ja": "dbt スナップショット", "en": "dbt snapshot"},
    "resource_loader": {"ja": "取込管理テーブル", "en": "loader bookkeeping table"},
    "materialization": {"ja": "実体化", "en": "Materialisation"},
    "description": {"ja": "説明", "en": "Description"},
    "primary_key": {"ja": "主キー", "en": "Primary key"},
    "columns": {"ja": "項目", "en": "Columns"},
    "column": {"ja": "項目名", "en": "Column"},
    "position": {"ja": "No.", "en": "No."},
    "type": {"ja": "型", "en": "Type"},
    "pii": {"ja": "個人情報", "en": "Personal data"},
    "pii_basis": {"ja": "個人情報の根拠", "en": "Personal-data basis"},
    "masking": {"ja": "マスキング", "en": "Masking"},
    "logical_name": {"ja": "連携元の項目名", "en": "Field in the source"},
    "key": {"ja": "キー", "en": "Key"},
    "yes": {"ja": "あり", "en": "yes"},
    "no": {"ja": "なし", "en": "no"},
    "pii_yes": {"ja": "●", "en": "yes"},
    "pii_no": {"ja": "—", "en": "no"},
    "pii_undeclared": {"ja": "未申告", "en": "not declared"},
    "basis_declared": {"ja": "YAML で宣言", "en": "declared in YAML"},
    "basis_inherited": {"ja": "継承", "en": "inherited from"},
    "basis_inferred": {"ja": "推定（同名の staging 項目）", "en": "inferred from the same-named staging column"},
    "basis_undeclared": {"ja": "宣言なし", "en": "not declared"},
    "not_built": {"ja": "（未構築）", "en": "(not built)"},
    "path": {"ja": "定義ファイル", "en": "Defined in"},
    "tags": {"ja": "タグ", "en": "Tags"},
    "upstream": {"ja": "上流", "en": "Upstream"},
    "downstream": {"ja": "下流", "en": "Downstream"},
    "raw_sources": {"ja": "元データ（raw）", "en": "Raw sources"},
    "description_origin": {"ja": "説明の出典", "en": "Description from"},
    "origin_dbt": {"ja": "dbt YAML", "en": "dbt YAML"},
    "origin_inherited": {"ja": "スナップショット元から継承", "en": "inherited from the snapshotted model"},
    "origin_dbt_snapshot": {"ja": "dbt スナップショット標準項目", "en": "dbt snapshot standard column"},
    "origin_loader": {"ja": "取込処理（yorisoi.sources.landing）", "en": "the loader (yorisoi.sources.landing)"},
    "origin_none": {"ja": "未記載", "en": "missing"},
    "missing": {"ja": "未記載", "en": "missing"},
    # update method and frequency
    "update_method": {"ja": "更新方法", "en": "Update method"},
    "update_frequency": {"ja": "更新頻度", "en": "Update frequency"},
    "updated_by": {"ja": "更新処理", "en": "Updated by"},
    "method_automatic": {"ja": "自動", "en": "automatic"},
    "method_manual": {"ja": "手動", "en": "manual"},
    "freq_realtime": {"ja": "リアルタイム", "en": "real-time"},
    "freq_hourly": {"ja": "毎時", "en": "hourly"},
    "freq_daily": {"ja": "毎日", "en": "daily"},
    "freq_weekly": {"ja": "毎週", "en": "weekly"},
    "freq_monthly": {"ja": "毎月", "en": "monthly"},
    "freq_cron": {"ja": "スケジュール（cron）", "en": "scheduled (cron)"},
    "freq_on_arrival": {
        "ja": "データ到着時（raw への取込のたび、最短毎時）",
        "en": "on data arrival (after each load into raw; at most hourly)",
    },
    "freq_daily_0530": {
        "ja": "毎日 05:30（日本時間）と顧客モデル更新のたび",
        "en": "daily at 05:30 JST, and after every customer-model build",
    },
    "freq_on_change": {
        "ja": "変更時（CSV を編集すると次回のビルドで反映）",
        "en": "on change (an edited CSV is loaded by the next build)",
    },
    "freq_on_ingest": {"ja": "取込処理の実行のたび", "en": "with every ingest run"},
    "freq_on_demand": {
        "ja": "定期更新なし（DAG の対象外。必要時に yorisoi dbt build で手動実行）",
        "en": "not scheduled (no DAG builds it; run `yorisoi dbt build` by hand when needed)",
    },
    "by_steward": {
        "ja": "データスチュワード／マーケターが dbt_project/seeds/{name}.csv を編集（build_customer_model が読み込み）",
        "en": "data stewards / marketers edit dbt_project/seeds/{name}.csv (loaded by build_customer_model)",
    },
    "by_hand": {"ja": "手動（yorisoi dbt build）", "en": "by hand (yorisoi dbt build)"},
    "update_summary": {"ja": "更新方法・頻度の一覧（層別）", "en": "Update method and frequency by layer"},
    "count": {"ja": "件数", "en": "Count"},
    # lineage
    "lineage": {"ja": "リネージ", "en": "Lineage"},
    "lineage_note": {
        "ja": "各マートが依存する元データ（raw）とその連携元システム、さらにオーディエンスと配信先。",
        "en": "For each mart: the raw tables and source systems it depends on, and the audiences and "
        "destinations that use it.",
    },
    "edges": {"ja": "依存関係（辺）", "en": "Dependencies (edges)"},
    "from": {"ja": "元", "en": "From"},
    "to": {"ja": "先", "en": "To"},
    "from_kind": {"ja": "元の種別", "en": "From kind"},
    "to_kind": {"ja": "先の種別", "en": "To kind"},
    "audiences": {"ja": "オーディエンス", "en": "Audiences"},
    "audience": {"ja": "オーディエンス", "en": "Audience"},
    "destinations": {"ja": "配信先", "en": "Destinations"},
    "destination": {"ja": "配信先", "en": "Destination"},
    "none_defined": {
        "ja": "まだ定義されていません（audiences/*.yml を追加すると自動で表示されます）",
        "en": "none defined yet (they appear here once audiences/*.yml exist)",
    },
    "source_systems": {"ja": "連携元システム", "en": "Source systems"},
    "node_system": {"ja": "連携元システム", "en": "source system"},
    "node_audience": {"ja": "オーディエンス", "en": "audience"},
    "node_destination": {"ja": "配信先", "en": "destination"},
    # checks
    "checks": {"ja": "品質チェック", "en": "Quality checks"},
    "check": {"ja": "チェック", "en": "Check"},
    "check_origin": {"ja": "仕組み", "en": "Framework"},
    "detail": {"ja": "内容", "en": "Detail"},
    "severity": {"ja": "重大度", "en": "Severity"},
    "suite": {"ja": "スイート", "en": "Suite"},
    "dbt_tests": {"ja": "dbt テスト", "en": "dbt tests"},
    "gx_checks": {"ja": "Great Expectations", "en": "Great Expectations"},
    "no_checks_yet": {"ja": "チェック未作成", "en": "no checks yet"},
    "unmatched_suites": {"ja": "対応するテーブルがないスイート", "en": "Suites whose table is not in the document"},
    "gx_suites_found": {"ja": "Great Expectations スイート数", "en": "Great Expectations suites"},
    "gate_results": {"ja": "品質ゲートの最新結果", "en": "Latest quality-gate results"},
    "gate_results_note": {
        "ja": "Airflow の品質ゲート（validate_raw、validate_marts）が最後に検証した結果。Great Expectations の "
        "Data Docs（var/out/docs/quality）は表示に外部 CDN を使うため、オフラインで読めるようここに転記する。",
        "en": "What the Airflow quality gates (validate_raw, validate_marts) found the last time they ran, "
        "copied here so it reads offline (the Great Expectations Data Docs in var/out/docs/quality load their "
        "styling from CDNs).",
    },
    "gate_validated_at": {"ja": "検証日時 (UTC)", "en": "Validated at (UTC)"},
    "gate_result": {"ja": "結果", "en": "Result"},
    "gate_rows": {"ja": "検証行数", "en": "Rows validated"},
    "gate_failed": {"ja": "失敗した期待値", "en": "Failed expectations"},
    "gate_warnings": {"ja": "警告", "en": "Warnings"},
    "gate_passed": {"ja": "合格", "en": "passed"},
    "gate_failed_word": {"ja": "不合格", "en": "failed"},
    "gate_not_run": {"ja": "品質ゲートはまだ実行されていない。", "en": "The quality gates have not run yet."},
    # gaps
    "gaps_note": {
        "ja": "以下は生成時に見つかった不足です。YAML（dbt / レジストリ）に記載すると次回の生成で解消します。",
        "en": "What generation found missing. Filling in the YAML (dbt / registry) fixes it at the next build.",
    },
    "gap": {"ja": "不足", "en": "Gap"},
    "gap_missing_description": {"ja": "説明がない項目", "en": "Columns without a description"},
    "gap_missing_type": {"ja": "型が不明な項目（未構築）", "en": "Columns without a type (not built)"},
    "gap_undeclared_pii": {
        "ja": "個人情報の申告がない raw 項目",
        "en": "Raw columns without a personal-data declaration",
    },
    "gap_pii_without_masking": {
        "ja": "マスキング方法のない個人情報項目",
        "en": "Personal-data columns without a masking method",
    },
    "gap_table_description": {"ja": "説明がないテーブル", "en": "Tables without a description"},
    "gap_unmatched": {"ja": "その他", "en": "Other"},
    "no_gaps": {"ja": "不足はありません。", "en": "Nothing missing."},
    "and_more": {"ja": "ほか {n} 件", "en": "and {n} more"},
}


def t(key: str, lang: str, **fmt: object) -> str:
    """The label `key` in `lang` ("ja" or "en"), formatted with `fmt`."""
    text = LABELS[key][lang]
    return text.format(**fmt) if fmt else text


def pick(text: dict[str, str] | str, lang: str) -> str:
    """A text that may be bilingual ({"ja": ..., "en": ...}) or written once."""
    if isinstance(text, dict):
        return text.get(lang) or text.get("en") or next(iter(text.values()), "")
    return text
