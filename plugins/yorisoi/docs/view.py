"""The model's values in words, per language: shared by the HTML and the workbook so both say the
same thing the same way."""

from __future__ import annotations

import re

from .labels import t
from .model import ColumnDoc, DataDefinition, TableDoc


def anchor(node_id: str) -> str:
    return "t-" + re.sub(r"[^A-Za-z0-9_-]+", "-", node_id)


def method(key: str, lang: str) -> str:
    return t(f"method_{key}", lang)


def frequency(table: TableDoc, lang: str) -> str:
    text = t(f"freq_{table.update_frequency}", lang)
    return f"{text} ({table.schedule})" if table.schedule and table.update_frequency != "on_demand" else text


def source_frequency(key: str, schedule: str, lang: str) -> str:
    return f"{t(f'freq_{key}', lang)} ({schedule})"


def updated_by(table: TableDoc, lang: str) -> str:
    if table.updated_by == "steward":
        return t("by_steward", lang, name=table.name)
    if table.updated_by == "hand":
        return t("by_hand", lang)
    return table.updated_by


def description(item: TableDoc | ColumnDoc, lang: str) -> str:
    return item.description_ja if lang == "ja" and item.description_ja else item.description


def masking(column: ColumnDoc, lang: str) -> str:
    return column.masking_ja if lang == "ja" and column.masking_ja else column.masking


def resource(table: TableDoc, lang: str) -> str:
    return t(f"resource_{table.resource}", lang)


def layer(key: str, lang: str) -> str:
    return t(f"layer_{key}", lang)


def pii(column: ColumnDoc, lang: str) -> str:
    if column.pii is None:
        return t("pii_undeclared", lang)
    return t("pii_yes" if column.pii else "pii_no", lang)


def pii_basis(column: ColumnDoc, lang: str) -> str:
    if column.pii is None:
        return t("basis_undeclared", lang)
    if column.pii_basis == "inherited":
        return f"{t('basis_inherited', lang)} {column.pii_basis_ref}"
    if column.pii_basis == "inferred":
        return f"{t('basis_inferred', lang)}: {column.pii_basis_ref}"
    return t("basis_declared", lang) if column.pii else ""


def origin(column: ColumnDoc, lang: str) -> str:
    return t(f"origin_{column.description_origin}", lang)


def column_type(column: ColumnDoc, lang: str) -> str:
    return column.type or t("not_built", lang)


def link_kind(key: str, lang: str) -> str:
    return t(f"link_{key}", lang)


def node_label(model: DataDefinition, node_id: str, lang: str) -> str:
    kind = node_id.split(".", 1)[0]
    if kind in ("system", "audience", "destination"):
        return f"{node_id.split('.', 1)[1]} ({t(f'node_{kind}', lang)})"
    return model.label(node_id)


def node_kind(model: DataDefinition, node_id: str, lang: str) -> str:
    kind = node_id.split(".", 1)[0]
    if kind in ("system", "audience", "destination"):
        return t(f"node_{kind}", lang)
    try:
        return layer(model.table(node_id).layer, lang)
    except KeyError:
        return kind


def first_line(text: str, limit: int = 160) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
