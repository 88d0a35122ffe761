"""The ER diagram of how the data links: an inline SVG drawn here (so the HTML works offline, with
no JavaScript) and the same diagram as Mermaid source for people who have a renderer.

Layout: one column per layer — source systems | raw | staging | intermediate | marts — with the
marts that reference others placed before the tables they reference (so every line runs left to
right and ends at the person). Boxes list key columns; lines are the join keys of `model.links`
(primary keys carried into staging, identity records, the bridge, dbt relationships tests).
Untested shared keys (`person_id` on every mart) are left to the tables in the document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from .labels import t
from .model import DataDefinition, LinkDoc

DRAWN_LINKS = ("primary_key", "identity_record", "identity_bridge", "relationship")
CHAR_W = 7.4  # px per character at font-size 12 (bold titles run wide)
ROW_H = 16
HEAD_H = 22
GAP_Y = 14
GAP_X = 150
MAX_ROWS = 4
MARGIN = 20
FONTS = "Noto Sans CJK JP, Hiragino Sans, Meiryo, sans-serif"
TOP = 50
CARDINALITY = {
    "primary_key": "||--||",
    "identity_record": "}o--||",
    "identity_bridge": "||--||",
    "relationship": "}o--||",
}


@dataclass
class Box:
    id: str
    title: str
    rows: list[tuple[str, str]]  # (marker, column)
    column: int
    kind: str  # system | table
    x: float = 0
    y: float = 0
    w: float = 0
    h: float = 0
    neighbours: list[str] = field(default_factory=list)


def diagram_parts(model: DataDefinition) -> tuple[dict[str, Box], list[LinkDoc], list[tuple[str, str]]]:
    """The boxes (placed), the drawn join links, and the system -> raw lines."""
    links = [link for link in model.links if link.kind in DRAWN_LINKS]
    tables = {tb.id: tb for tb in model.tables}
    ids = {i for link in links for i in (link.from_table, link.to_table)}
    keyed: dict[str, dict[str, str]] = {}
    for link in links:
        for tid, cols in ((link.from_table, link.from_columns), (link.to_table, link.to_columns)):
            for c in cols:
                keyed.setdefault(tid, {}).setdefault(c, "FK")
    # columns: fixed for the early layers; then the tables that reference others, then those referenced
    fixed = {"raw": 1, "staging": 2, "intermediate": 3}
    referencing = {link.from_table for link in links if tables[link.from_table].layer not in fixed}
    boxes: dict[str, Box] = {}
    for tid in ids:
        tb = tables[tid]
        col = fixed.get(tb.layer, 4 if tid in referencing else 5)
        rows = [("PK", c) for c in tb.primary_key]
        rows += [(m, c) for c, m in keyed.get(tid, {}).items() if c not in tb.primary_key]
        title = f"{tb.schema}.{tb.name}" if tb.database_file == model.databases[0].file else tb.relation
        boxes[tid] = Box(tid, title, rows, col, "table")
    system_lines = []
    for system in model.source_systems:
        sid = f"system.{system.name}"
        boxes[sid] = Box(sid, system.name, [("", system.kind), ("", system.schedule)], 0, "system")
        for tid in system.tables:
            if tid in boxes:
                system_lines.append((sid, tid))
    for a, b in [(link.from_table, link.to_table) for link in links] + system_lines:
        boxes[a].neighbours.append(b)
        boxes[b].neighbours.append(a)
    _place(boxes)
    return boxes, links, system_lines


def _place(boxes: dict[str, Box]) -> None:
    columns: dict[int, list[Box]] = {}
    for box in boxes.values():
        shown = min(len(box.rows), MAX_ROWS + 1)
        box.h = HEAD_H + ROW_H * shown + 6
        longest = max([len(box.title)] + [len(m) + len(c) + 2 for m, c in box.rows[:MAX_ROWS]])
        box.w = max(150.0, min(330.0, longest * CHAR_W + 20))
        columns.setdefault(box.column, []).append(box)
    order: dict[str, float] = {}
    x = float(MARGIN)
    for col in sorted(columns):
        members = columns[col]
        if col == 0:
            members.sort(key=lambda b: b.id)
        else:  # barycentre of the neighbours already placed, then name
            members.sort(
                key=lambda b: (
                    _mean([order[n] for n in b.neighbours if n in order and boxes[n].column < col]),
                    b.title,
                )
            )
        width = max(b.w for b in members)
        y = float(TOP)
        for i, b in enumerate(members):
            b.x, b.y, b.w = x, y, width
            y += b.h + GAP_Y
            order[b.id] = i + col * 1000
        x += width + GAP_X
    # centre each column vertically against the tallest
    height = max(sum(b.h + GAP_Y for b in members) for members in columns.values())
    for members in columns.values():
        shift = (height - sum(b.h + GAP_Y for b in members)) / 2
        for b in members:
            b.y += shift


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 1e9


def _edge_label(link: LinkDoc) -> str:
    a, b = ", ".join(link.from_columns), ", ".join(link.to_columns)
    return a if a == b else f"{a} → {b}"


def render_svg(model: DataDefinition, lang: str) -> str:
    """The ER diagram as a standalone SVG document (also valid inline in HTML)."""
    boxes, links, system_lines = diagram_parts(model)
    width = max(b.x + b.w for b in boxes.values()) + MARGIN
    height = max(b.y + b.h for b in boxes.values()) + MARGIN
    heads = [t("source_systems", lang), "raw", "staging", "intermediate", "marts", ""]
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" height="{height:.0f}" font-family="{FONTS}" font-size="12" '
        f'role="img" aria-label="{escape(t("erd", lang))}">',
        f"<title>{escape(t('erd', lang))}</title>",
        "<style>.box{fill:#fff;stroke:#44546a;stroke-width:1.2}.sys{fill:#eef3f8}.head{fill:#44546a}"
        ".ht{fill:#fff;font-weight:bold}.row{fill:#222}.pk{fill:#b03a2e;font-weight:bold}.fk{fill:#1f618d}"
        ".ln{fill:none;stroke:#7f8c8d;stroke-width:1.1}.sl{fill:none;stroke:#c8d1da;stroke-dasharray:4 3}"
        ".lb{fill:#555;font-size:10px}.ch{fill:#44546a;font-weight:bold;font-size:13px}</style>",
    ]
    col_x: dict[int, float] = {}
    for b in boxes.values():
        col_x[b.column] = min(col_x.get(b.column, b.x), b.x)
    for col, x in sorted(col_x.items()):
        head = heads[min(col, len(heads) - 1)]
        if head:
            out.append(f'<text class="ch" x="{x:.0f}" y="{TOP - 20}">{escape(head)}</text>')
    for a, b in system_lines:
        out.append(f'<path class="sl" d="{_curve(boxes[a], boxes[b])}"/>')
    for link in links:
        a, b = boxes[link.from_table], boxes[link.to_table]
        path = _curve(a, b)
        mx, my, anchor = _label_at(a, b)
        out.append(
            f"<g><title>{escape(model.label(a.id))} → {escape(model.label(b.id))}: {escape(_edge_label(link))}"
            f'</title><path class="ln" d="{path}"/>'
            f'<text class="lb" x="{mx:.0f}" y="{my - 3:.0f}" text-anchor="{anchor}">'
            f"{escape(_edge_label(link))}</text></g>"
        )
    for b in boxes.values():
        cls = "box sys" if b.kind == "system" else "box"
        out.append(f'<g id="erd-{escape(b.id)}"><title>{escape(b.title)}</title>')
        out.append(f'<rect class="{cls}" x="{b.x:.0f}" y="{b.y:.0f}" width="{b.w:.0f}" height="{b.h:.0f}" rx="3"/>')
        out.append(f'<rect class="head" x="{b.x:.0f}" y="{b.y:.0f}" width="{b.w:.0f}" height="{HEAD_H}" rx="3"/>')
        out.append(f'<text class="ht" x="{b.x + 6:.0f}" y="{b.y + 15:.0f}">{escape(b.title)}</text>')
        rows = b.rows[:MAX_ROWS] + ([("", "…")] if len(b.rows) > MAX_ROWS else [])
        for i, (marker, name) in enumerate(rows):
            y = b.y + HEAD_H + ROW_H * (i + 1) - 3
            mcls = "pk" if marker == "PK" else "fk"
            if marker:
                out.append(f'<text class="{mcls}" x="{b.x + 6:.0f}" y="{y:.0f}">{marker}</text>')
            out.append(f'<text class="row" x="{b.x + (30 if marker else 6):.0f}" y="{y:.0f}">{escape(name)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)


def _anchor(a: Box, b: Box) -> tuple[float, float, float, float, float]:
    """Start and end points and the control offset of the line from a to b."""
    ay, by = a.y + a.h / 2, b.y + b.h / 2
    if a.column == b.column:  # a loop on the right of the column
        x = a.x + a.w
        return x, ay, x, by, 45.0
    if a.column > b.column:
        a, b = b, a
        ay, by = by, ay
    return a.x + a.w, ay, b.x, by, (b.x - a.x - a.w) / 2


def _curve(a: Box, b: Box) -> str:
    x1, y1, x2, y2, dx = _anchor(a, b)
    if a.column == b.column:
        return f"M{x1:.0f},{y1:.0f} C{x1 + dx:.0f},{y1:.0f} {x2 + dx:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"
    return f"M{x1:.0f},{y1:.0f} C{x1 + dx:.0f},{y1:.0f} {x2 - dx:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"


def _label_at(a: Box, b: Box) -> tuple[float, float, str]:
    """Where a line's label goes: beside the box it leaves (unique per line), or on a loop."""
    x1, y1, x2, y2, dx = _anchor(a, b)
    if a.column == b.column:
        return x1 + dx * 0.75 + 4, (y1 + y2) / 2, "start"
    if a.column < b.column:
        return x1 + 4, y1, "start"
    return x2 - 4, y2, "end"


def _entity(box: Box) -> str:
    return box.title.replace(".", "__").replace("-", "_")


def render_mermaid(model: DataDefinition) -> str:
    """The same diagram as Mermaid `erDiagram` source."""
    boxes, links, system_lines = diagram_parts(model)
    types = {tb.id: {c.name: c.type for c in tb.columns} for tb in model.tables}
    lines = ["erDiagram"]
    for box in sorted(boxes.values(), key=lambda b: (b.column, b.y)):
        if box.kind == "system":
            lines.append(f"    {_entity(box)} {{")
            lines.append(f'        string kind "{box.rows[0][1]}"')
            lines.append(f'        string schedule "{box.rows[1][1]}"')
            lines.append("    }")
            continue
        lines.append(f"    {_entity(box)} {{")
        for marker, name in box.rows:
            kind = (types.get(box.id, {}).get(name) or "unknown").replace(" ", "_").replace('"', "")
            lines.append(f"        {kind} {name}{' PK' if marker == 'PK' else ' FK'}")
        lines.append("    }")
    for a, b in system_lines:
        lines.append(f'    {_entity(boxes[a])} ||--o{{ {_entity(boxes[b])} : "ingest"')
    for link in links:
        a, b = boxes[link.from_table], boxes[link.to_table]
        label = _edge_label(link).replace('"', "'")
        lines.append(f'    {_entity(a)} {CARDINALITY[link.kind]} {_entity(b)} : "{label}"')
    return "\n".join(lines) + "\n"
