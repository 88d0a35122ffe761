"""The workbook auditors open in Excel: one per language, one sheet per subject, each with its
header row frozen and filters on.

Sheets: overview, sources, databases, tables, columns, join keys, identity rules, lineage,
audiences, checks and gaps. Every column row repeats its table's update method and frequency,
so a filter on the columns sheet answers "how and how often is this item updated"."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from . import view
from .labels import t
from .model import DataDefinition

SHEETS = {
    "overview": {"ja": "概要", "en": "Overview"},
    "sources": {"ja": "連携元", "en": "Sources"},
    "databases": {"ja": "データベース", "en": "Databases"},
    "tables": {"ja": "テーブル", "en": "Tables"},
    "columns": {"ja": "項目", "en": "Columns"},
    "links": {"ja": "連携キー", "en": "Join keys"},
    "identity_rules": {"ja": "名寄せルール", "en": "Identity rules"},
    "lineage": {"ja": "リネージ", "en": "Lineage"},
    "audiences": {"ja": "オーディエンス", "en": "Audiences"},
    "checks": {"ja": "品質チェック", "en": "Checks"},
    "gaps": {"ja": "未記載", "en": "Gaps"},
}
HEADER_FILL = PatternFill("solid", fgColor="44546A")
HEADER_FONT = Font(bold=True, color="FFFFFF")
WRAP = Alignment(wrap_text=True, vertical="top")
TOP = Alignment(vertical="top")


def _clean(value):
    if isinstance(value, str):
        return ILLEGAL_CHARACTERS_RE.sub("", value)
    return value


def _sheet(wb: Workbook, key: str, lang: str, headers: list[str], rows: list[list], wide: set[int] = frozenset()):
    ws = wb.create_sheet(SHEETS[key][lang])
    ws.append(headers)
    for cell in ws[1]:
        cell.fill, cell.font, cell.alignment = HEADER_FILL, HEADER_FONT, WRAP
    for row in rows:
        ws.append([_clean(v) for v in row])
    ws.freeze_panes = "A2"
    ws.auto_filter.ref = f"A1:{get_column_letter(len(headers))}{max(len(rows) + 1, 2)}"
    for i, header in enumerate(headers, 1):
        longest = max([len(str(header))] + [len(str(r[i - 1])) for r in rows[:500] if r[i - 1] is not None])
        width = 60 if i in wide else min(max(10, longest + 2), 45)
        ws.column_dimensions[get_column_letter(i)].width = width
        if i in wide:
            for (cell,) in ws.iter_rows(min_row=2, min_col=i, max_col=i):
                cell.alignment = WRAP
    return ws


def write_workbook(model: DataDefinition, lang: str, path: Path) -> Path:
    """Write the workbook of `model` in `lang` to `path`."""
    wb = Workbook()
    wb.remove(wb.active)
    L = lambda key: t(key, lang)  # noqa: E731 - a short alias keeps the header lists readable
    counts = model.counts()
    checks_by_table: dict[str, dict[str, int]] = defaultdict(lambda: {"dbt": 0, "gx": 0})
    for c in model.checks:
        checks_by_table[c.table][c.origin] += 1
    tables = {tb.id: tb for tb in model.tables}

    overview = [[L("title"), model.project], [L("generated_at"), model.generated_at]]
    overview += [[L("generated_from"), f"{model.registry}, dbt {model.dbt_version} manifest / catalog"]]
    overview += [[L(f"n_{k}"), v] for k, v in counts.items()]
    overview += [[L("gx_suites_found"), len(model.suites)], [L("description"), L("generated_note")]]
    _sheet(wb, "overview", lang, [L("item"), L("value")], overview, wide={2})

    sources = []
    for s in model.source_systems:
        for tid in s.tables:
            tb = tables.get(tid)
            sources.append(
                [
                    s.name,
                    s.system,
                    L(f"kind_{s.kind}"),
                    s.conn_id,
                    tb.relation if tb else tid,
                    ", ".join(tb.primary_key) if tb else "",
                    view.method(s.update_method, lang),
                    view.source_frequency(s.update_frequency, s.schedule, lang),
                    s.schedule,
                    s.ingest_dag,
                    tb.arrival if tb else "",
                    view.description(tb, lang) if tb else "",
                ]
            )
    _sheet(
        wb,
        "sources",
        lang,
        [L("source"), L("system"), L("kind"), L("connection"), L("table"), L("primary_key"), L("update_method"),
         L("update_frequency"), L("schedule"), L("ingest_dag"), L("arrival"), L("description")],
        sources,
        wide={12},
    )  # fmt: skip

    databases = [
        [d.name, d.file, L(f"role_{d.role}"), s.name, view.layer(s.layer, lang), s.tables, L(f"layer_desc_{s.layer}")]
        for d in model.databases
        for s in d.schemas
    ]
    _sheet(
        wb,
        "databases",
        lang,
        [L("database"), L("file"), L("role"), L("schema"), L("layer"), L("n_tables"), L("description")],
        databases,
        wide={3, 7},
    )

    rows = []
    for tb in model.tables:
        gx = checks_by_table[tb.id]["gx"]
        rows.append(
            [
                tb.relation, tb.database_file, tb.schema, view.layer(tb.layer, lang), view.resource(tb, lang),
                tb.materialization, ", ".join(tb.primary_key), view.method(tb.update_method, lang),
                view.frequency(tb, lang), view.updated_by(tb, lang), tb.source_system, len(tb.columns),
                sum(1 for c in tb.columns if c.pii), checks_by_table[tb.id]["dbt"], gx or L("no_checks_yet"),
                ", ".join(model.label(r) for r in tb.raw_sources), view.description(tb, lang), tb.path,
            ]
        )  # fmt: skip
    _sheet(
        wb,
        "tables",
        lang,
        [L("table"), L("file"), L("schema"), L("layer"), L("resource"), L("materialization"), L("primary_key"),
         L("update_method"), L("update_frequency"), L("updated_by"), L("source"), L("n_columns"), L("n_pii_columns"),
         L("dbt_tests"), L("gx_checks"), L("raw_sources"), L("description"), L("path")],
        rows,
        wide={16, 17},
    )  # fmt: skip

    rows = [
        [
            tb.relation, view.layer(tb.layer, lang), c.position, c.name, view.column_type(c, lang),
            "PK" if c.is_key else "", view.description(c, lang) or L("missing"), view.origin(c, lang),
            view.pii(c, lang), view.masking(c, lang), view.pii_basis(c, lang), c.logical_name,
            view.method(tb.update_method, lang), view.frequency(tb, lang),
        ]
        for tb in model.tables
        for c in tb.columns
    ]  # fmt: skip
    _sheet(
        wb,
        "columns",
        lang,
        [L("table"), L("layer"), L("position"), L("column"), L("type"), L("key"), L("description"),
         L("description_origin"), L("pii"), L("masking"), L("pii_basis"), L("logical_name"), L("update_method"),
         L("update_frequency")],
        rows,
        wide={7, 10},
    )  # fmt: skip

    rows = [
        [view.link_kind(k.kind, lang), model.label(k.from_table), ", ".join(k.from_columns), model.label(k.to_table),
         ", ".join(k.to_columns), k.note]
        for k in model.links
    ]  # fmt: skip
    _sheet(
        wb,
        "links",
        lang,
        [L("link_kind"), L("from_table"), L("from_columns"), L("to_table"), L("to_columns"), L("detail")],
        rows,
    )
    rows = [[r.name, r.priority, " + ".join(r.keys), r.description] for r in model.identity_rules]
    _sheet(wb, "identity_rules", lang, [L("rule"), L("priority"), L("keys"), L("description")], rows, wide={4})

    rows = [
        [view.node_label(model, e.source, lang), view.node_kind(model, e.source, lang),
         view.node_label(model, e.target, lang), view.node_kind(model, e.target, lang)]
        for e in model.edges
    ]  # fmt: skip
    _sheet(wb, "lineage", lang, [L("from"), L("from_kind"), L("to"), L("to_kind")], rows)

    rows = [
        [a.name, ", ".join(model.label(x) for x in a.tables), ", ".join(a.destinations), a.description, a.file]
        for a in model.audiences
    ] or [[L("none_defined"), "", "", "", ""]]
    _sheet(wb, "audiences", lang, [L("audience"), L("tables"), L("destinations"), L("description"), L("file")], rows)

    rows = [
        [model.label(c.table), c.column, "dbt" if c.origin == "dbt" else "Great Expectations", c.name, c.detail,
         c.severity, c.suite]
        for c in model.checks
    ]  # fmt: skip
    rows += [
        [tb.relation, "", "Great Expectations", "", L("no_checks_yet"), "", ""]
        for tb in model.tables
        if not checks_by_table[tb.id]["gx"]
    ]
    rows += [
        ["", "", "Great Expectations", "", f"{L('unmatched_suites')}: {s}", "", ""] for s in model.unmatched_suites
    ]
    _sheet(
        wb,
        "checks",
        lang,
        [L("table"), L("column"), L("check_origin"), L("check"), L("detail"), L("severity"), L("suite")],
        rows,
        wide={5},
    )

    rows = [[L(f"gap_{kind}"), item] for kind, items in model.gaps.items() for item in items]
    _sheet(wb, "gaps", lang, [L("gap"), L("item")], rows or [[L("no_gaps"), ""]])

    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path
