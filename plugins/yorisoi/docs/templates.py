# ruff: noqa: E501 - HTML templates: one table row per line reads better than wrapped markup
"""Jinja2 templates of the HTML document, kept in Python so they ship with the package.

The pages are self-contained: inline CSS, an inline SVG diagram, no JavaScript, no fonts or
scripts from a network (auditors open them offline)."""

from __future__ import annotations

CSS = """
:root { --ink:#1d2733; --muted:#5b6776; --line:#d5dbe2; --head:#44546a; --pii:#b03a2e; --bg:#f6f8fa; }
* { box-sizing: border-box; }
body { font-family: "Noto Sans CJK JP", "Hiragino Sans", Meiryo, system-ui, sans-serif; color: var(--ink);
       margin: 0 auto; max-width: 1280px; padding: 24px; line-height: 1.5; font-size: 14px; }
h1 { font-size: 26px; margin: 0 0 4px; } h2 { font-size: 20px; border-bottom: 2px solid var(--head);
     padding-bottom: 4px; margin-top: 40px; } h3 { font-size: 16px; margin-top: 28px; }
h4 { font-size: 14px; margin: 16px 0 6px; }
.sub { color: var(--muted); margin: 0 0 12px; } .note { color: var(--muted); font-size: 13px; }
nav.top a { margin-right: 14px; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 16px; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 4px 6px; vertical-align: top; text-align: left; }
th { background: var(--head); color: #fff; font-weight: 600; position: sticky; top: 0; }
tr:nth-child(even) td { background: var(--bg); }
td.num { text-align: right; } td.pii { color: var(--pii); font-weight: bold; text-align: center; }
td.missing, span.missing { color: var(--pii); font-style: italic; }
code { font-size: 12px; background: var(--bg); padding: 0 3px; }
dl.meta { display: grid; grid-template-columns: 190px 1fr; gap: 2px 12px; margin: 6px 0 10px; font-size: 13px; }
dl.meta dt { color: var(--muted); } dl.meta dd { margin: 0; }
section.table { border-top: 1px solid var(--line); margin-top: 24px; }
.erd { overflow-x: auto; border: 1px solid var(--line); padding: 8px; background: #fff; }
pre { background: var(--bg); padding: 10px; overflow-x: auto; font-size: 12px; }
.desc p { margin: 4px 0; } .desc table { width: auto; }
table.lineage { table-layout: fixed; } table.lineage td { overflow-wrap: anywhere; }
table.lineage col.c-table { width: 24%; } table.lineage col.c-list { width: 27%; } table.lineage col.c-short { width: 11%; }
ul.names { margin: 0; padding-left: 1.1em; } ul.names li { margin: 0; }
ul.toc { columns: 2; } .tag { display: inline-block; background: var(--bg); border: 1px solid var(--line);
       border-radius: 3px; padding: 0 4px; margin-right: 3px; font-size: 12px; }
@media print { th { position: static; } .erd { overflow: visible; } }
"""

INDEX = """<!DOCTYPE html>
<html lang="ja"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>データ項目定義書 / Data definition document</title><style>{{ css }}</style></head>
<body>
<h1>データ項目定義書 / Data definition document</h1>
<p class="sub">{{ m.project }} · {{ m.generated_at }} · dbt {{ m.dbt_version }}</p>
<table>
<tr><th></th><th>日本語</th><th>English</th></tr>
<tr><td>HTML</td><td><a href="ja.html">ja.html</a></td><td><a href="en.html">en.html</a></td></tr>
<tr><td>Excel</td><td><a href="{{ files.xlsx_ja }}">{{ files.xlsx_ja }}</a></td>
    <td><a href="{{ files.xlsx_en }}">{{ files.xlsx_en }}</a></td></tr>
<tr><td>ER</td><td><a href="{{ files.erd_ja }}">{{ files.erd_ja }}</a></td><td><a href="{{ files.erd_en }}">{{ files.erd_en }}</a></td></tr>
<tr><td>Mermaid</td><td colspan="2"><a href="{{ files.mermaid }}">{{ files.mermaid }}</a></td></tr>
<tr><td>JSON</td><td colspan="2"><a href="{{ files.json }}">{{ files.json }}</a></td></tr>
<tr><td>dbt docs</td><td colspan="2">{% if files.dbt_docs %}<a href="{{ files.dbt_docs }}">{{ files.dbt_docs }}</a>{% else %}—{% endif %}</td></tr>
</table>
<table>
<tr><th>項目</th><th>Item</th><th>値 / Value</th></tr>
{% for key, value in counts.items() %}<tr><td>{{ t("n_" ~ key, "ja") }}</td><td>{{ t("n_" ~ key, "en") }}</td><td class="num">{{ value }}</td></tr>
{% endfor %}</table>
<p class="note">{{ t("generated_note", "ja") }}<br>{{ t("generated_note", "en") }}</p>
</body></html>
"""

PAGE = """<!DOCTYPE html>
<html lang="{{ lang }}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ t("title") }} — {{ m.project }}</title><style>{{ css }}</style></head>
<body>
<h1 id="top">{{ t("title") }}</h1>
<p class="sub">{{ t("subtitle") }}</p>
<nav class="top"><a href="{{ other }}.html">{{ t("other_language") }}</a>
<a href="{{ files['xlsx_' ~ lang] }}">{{ t("workbook") }}</a>
{% if files.dbt_docs %}<a href="{{ files.dbt_docs }}">{{ t("dbt_docs") }}</a>{% endif %}
<a href="{{ files.json }}">{{ t("json_model") }}</a></nav>
<dl class="meta"><dt>{{ t("generated_at") }}</dt><dd>{{ m.generated_at }} (dbt {{ m.dbt_version }})</dd>
<dt>{{ t("generated_from") }}</dt><dd><code>{{ m.registry }}</code>, dbt manifest / catalog{% if m.suites %}, Great Expectations ({{ m.suites|length }}){% endif %}</dd></dl>
<p class="note">{{ t("generated_note") }}</p>

<h2>{{ t("contents") }}</h2>
<ul>
{% for s in ["s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"] %}<li><a href="#{{ s }}">{{ t(s) }}</a></li>{% endfor %}
</ul>

<h2 id="s1">{{ t("s1") }}</h2>
<table><tr><th>{{ t("item") }}</th><th>{{ t("value") }}</th></tr>
{% for key, value in counts.items() %}<tr><td>{{ t("n_" ~ key) }}</td><td class="num">{{ value }}</td></tr>{% endfor %}
</table>
<h3>{{ t("sources") }}</h3>
<table><tr><th>{{ t("source") }}</th><th>{{ t("system") }}</th><th>{{ t("kind") }}</th><th>{{ t("connection") }}</th>
<th>{{ t("update_method") }}</th><th>{{ t("update_frequency") }}</th><th>{{ t("ingest_dag") }}</th><th>{{ t("n_tables") }}</th><th>{{ t("description") }}</th></tr>
{% for s in m.source_systems %}<tr><td><b>{{ s.name }}</b></td><td>{{ s.system }}</td><td>{{ t("kind_" ~ s.kind) }}</td>
<td><code>{{ s.conn_id }}</code></td><td>{{ v.method(s.update_method, lang) }}</td><td>{{ v.source_frequency(s.update_frequency, s.schedule, lang) }}</td>
<td><code>{{ s.ingest_dag }}</code></td><td class="num">{{ s.tables|length }}</td><td>{{ s.description }}</td></tr>
{% endfor %}</table>
<h3>{{ t("databases") }}</h3>
<table><tr><th>{{ t("database") }}</th><th>{{ t("file") }}</th><th>{{ t("role") }}</th><th>{{ t("schema") }}</th><th>{{ t("layer") }}</th><th>{{ t("n_tables") }}</th><th>{{ t("description") }}</th></tr>
{% for d in m.databases %}{% for s in d.schemas %}<tr>{% if loop.first %}<td rowspan="{{ d.schemas|length }}"><b>{{ d.name }}</b></td>
<td rowspan="{{ d.schemas|length }}"><code>{{ d.file }}</code></td><td rowspan="{{ d.schemas|length }}">{{ t("role_" ~ d.role) }}</td>{% endif %}
<td><code>{{ s.name }}</code></td><td>{{ v.layer(s.layer, lang) }}</td><td class="num">{{ s.tables }}</td><td>{{ t("layer_desc_" ~ s.layer) }}</td></tr>
{% endfor %}{% endfor %}</table>

<h2 id="s2">{{ t("s2") }}</h2>
<div class="desc">{{ md(t("identity_path")) }}</div>
<h3>{{ t("erd") }}</h3>
<p class="note">{{ t("erd_note") }}</p>
<div class="erd">{{ svg }}</div>
<details><summary>{{ t("mermaid") }}</summary><pre>{{ mermaid }}</pre></details>
<h3>{{ t("links") }}</h3>
<table><tr><th>{{ t("link_kind") }}</th><th>{{ t("from_table") }}</th><th>{{ t("from_columns") }}</th><th>{{ t("to_table") }}</th><th>{{ t("to_columns") }}</th><th>{{ t("detail") }}</th></tr>
{% for l in m.links %}<tr><td>{{ v.link_kind(l.kind, lang) }}</td><td><a href="#{{ v.anchor(l.from_table) }}">{{ m.label(l.from_table) }}</a></td>
<td><code>{{ l.from_columns|join(", ") }}</code></td><td><a href="#{{ v.anchor(l.to_table) }}">{{ m.label(l.to_table) }}</a></td>
<td><code>{{ l.to_columns|join(", ") }}</code></td><td>{% if l.note %}<code>{{ l.note }}</code>{% endif %}</td></tr>
{% endfor %}</table>
{% if m.identity_rules %}<h3>{{ t("identity_rules") }}</h3>
<table><tr><th>{{ t("rule") }}</th><th>{{ t("priority") }}</th><th>{{ t("keys") }}</th><th>{{ t("description") }}</th></tr>
{% for r in m.identity_rules %}<tr><td><code>{{ r.name }}</code></td><td class="num">{{ r.priority }}</td><td><code>{{ r.keys|join(" + ") }}</code></td><td>{{ r.description }}</td></tr>
{% endfor %}</table>{% endif %}

<h2 id="s3">{{ t("s3") }}</h2>
<table><tr><th>{{ t("table") }}</th><th>{{ t("layer") }}</th><th>{{ t("resource") }}</th><th>{{ t("columns") }}</th><th>{{ t("pii") }}</th>
<th>{{ t("update_method") }}</th><th>{{ t("update_frequency") }}</th><th>{{ t("description") }}</th></tr>
{% for tb in m.tables %}<tr><td><a href="#{{ v.anchor(tb.id) }}">{{ tb.relation }}</a></td><td>{{ v.layer(tb.layer, lang) }}</td><td>{{ v.resource(tb, lang) }}</td>
<td class="num">{{ tb.columns|length }}</td><td class="num">{{ tb.columns|selectattr("pii")|list|length }}</td>
<td>{{ v.method(tb.update_method, lang) }}</td><td>{{ v.frequency(tb, lang) }}</td><td>{{ v.first_line(v.description(tb, lang)) }}</td></tr>
{% endfor %}</table>

{% for tb in m.tables %}
<section class="table" id="{{ v.anchor(tb.id) }}">
<h3>{{ tb.relation }}</h3>
<dl class="meta">
<dt>{{ t("resource") }}</dt><dd>{{ v.resource(tb, lang) }} · {{ v.layer(tb.layer, lang) }} · {{ t("materialization") }}: {{ tb.materialization }}{% if not tb.built %} · <span class="missing">{{ t("not_built") }}</span>{% endif %}</dd>
<dt>{{ t("database") }}</dt><dd><code>{{ tb.database_file }}</code> / <code>{{ tb.schema }}</code></dd>
<dt>{{ t("primary_key") }}</dt><dd>{% if tb.primary_key %}<code>{{ tb.primary_key|join(", ") }}</code>{% else %}—{% endif %}</dd>
<dt>{{ t("update_method") }}</dt><dd>{{ v.method(tb.update_method, lang) }}</dd>
<dt>{{ t("update_frequency") }}</dt><dd>{{ v.frequency(tb, lang) }}{% if tb.arrival %} · {{ t("arrival") }}: {{ tb.arrival }}{% endif %}</dd>
<dt>{{ t("updated_by") }}</dt><dd>{{ v.updated_by(tb, lang) }}</dd>
{% if tb.source_system %}<dt>{{ t("source") }}</dt><dd>{{ tb.source_system }}</dd>{% endif %}
<dt>{{ t("path") }}</dt><dd><code>{{ tb.path }}</code></dd>
{% if tb.tags %}<dt>{{ t("tags") }}</dt><dd>{% for g in tb.tags %}<span class="tag">{{ g }}</span>{% endfor %}</dd>{% endif %}
{% if tb.upstream %}<dt>{{ t("upstream") }}</dt><dd>{% for u in tb.upstream %}<a href="#{{ v.anchor(u) }}">{{ m.label(u) }}</a>{% if not loop.last %}, {% endif %}{% endfor %}</dd>{% endif %}
{% if tb.downstream %}<dt>{{ t("downstream") }}</dt><dd>{% for u in tb.downstream %}<a href="#{{ v.anchor(u) }}">{{ m.label(u) }}</a>{% if not loop.last %}, {% endif %}{% endfor %}</dd>{% endif %}
{% if tb.raw_sources %}<dt>{{ t("raw_sources") }}</dt><dd>{% for u in tb.raw_sources %}<a href="#{{ v.anchor(u) }}">{{ m.label(u) }}</a>{% if not loop.last %}, {% endif %}{% endfor %}</dd>{% endif %}
<dt>{{ t("checks") }}</dt><dd>{{ t("dbt_tests") }}: {{ dbt_checks.get(tb.id, [])|length }} · {{ t("gx_checks") }}:
{% if gx_checks.get(tb.id) %}{{ gx_checks[tb.id]|length }}{% else %}{{ t("no_checks_yet") }}{% endif %}</dd>
</dl>
<div class="desc">{{ md(v.description(tb, lang)) }}</div>
<table><tr><th>{{ t("position") }}</th><th>{{ t("column") }}</th><th>{{ t("type") }}</th><th>{{ t("key") }}</th><th>{{ t("description") }}</th>
<th>{{ t("pii") }}</th><th>{{ t("masking") }}</th><th>{{ t("pii_basis") }}</th>{% if tb.resource == "source" %}<th>{{ t("logical_name") }}</th>{% endif %}</tr>
{% for c in tb.columns %}<tr><td class="num">{{ c.position }}</td><td><code>{{ c.name }}</code></td><td>{{ v.column_type(c, lang) }}</td><td>{% if c.is_key %}PK{% endif %}</td>
<td{% if not c.description %} class="missing"{% endif %}>{% if c.description %}{{ mdi(v.description(c, lang)) }}{% if c.description_origin not in ("dbt",) %} <span class="note">({{ v.origin(c, lang) }})</span>{% endif %}{% else %}{{ t("missing") }}{% endif %}</td>
<td class="pii">{{ v.pii(c, lang) }}</td><td>{{ v.masking(c, lang) }}</td><td class="note">{{ v.pii_basis(c, lang) }}</td>{% if tb.resource == "source" %}<td>{{ c.logical_name }}</td>{% endif %}</tr>
{% endfor %}</table>
{% set checks = dbt_checks.get(tb.id, []) + gx_checks.get(tb.id, []) %}
{% if checks %}<details><summary>{{ t("checks") }} ({{ checks|length }})</summary>
<table><tr><th>{{ t("check_origin") }}</th><th>{{ t("column") }}</th><th>{{ t("check") }}</th><th>{{ t("detail") }}</th><th>{{ t("severity") }}</th></tr>
{% for c in checks %}<tr><td>{{ "dbt" if c.origin == "dbt" else "Great Expectations" }}{% if c.suite %} ({{ c.suite }}){% endif %}</td><td><code>{{ c.column }}</code></td>
<td><code>{{ c.name }}</code></td><td>{{ c.detail }}</td><td>{{ c.severity }}</td></tr>{% endfor %}
</table></details>{% endif %}
<p class="note"><a href="#top">↑</a></p>
</section>
{% endfor %}

<h2 id="s4">{{ t("s4") }}</h2>
<table><tr><th>{{ t("layer") }}</th><th>{{ t("update_method") }}</th><th>{{ t("updated_by") }}</th><th>{{ t("n_tables") }}</th></tr>
{% for row in method_summary %}<tr><td>{{ v.layer(row[0], lang) }}</td><td>{{ v.method(row[1], lang) }}</td><td>{{ row[2] }}</td><td class="num">{{ row[3] }}</td></tr>{% endfor %}
</table>
<h2 id="s5">{{ t("s5") }}</h2>
<table><tr><th>{{ t("layer") }}</th><th>{{ t("update_frequency") }}</th><th>{{ t("n_tables") }}</th><th>{{ t("tables") }}</th></tr>
{% for row in frequency_summary %}<tr><td>{{ v.layer(row[0], lang) }}</td><td>{{ row[1] }}</td><td class="num">{{ row[2]|length }}</td>
<td>{% for tb in row[2] %}<a href="#{{ v.anchor(tb.id) }}">{{ tb.name }}</a>{% if not loop.last %}, {% endif %}{% endfor %}</td></tr>{% endfor %}
</table>

<h2 id="s6">{{ t("s6") }}</h2>
<p class="note">{{ t("lineage_note") }}</p>
<table class="lineage"><colgroup><col class="c-table"><col class="c-list"><col class="c-list"><col class="c-short"><col class="c-short"></colgroup>
<tr><th>{{ t("table") }}</th><th>{{ t("upstream") }}</th><th>{{ t("raw_sources") }}</th><th>{{ t("source_systems") }}</th><th>{{ t("audiences") }}</th></tr>
{% for tb in m.tables if tb.layer in ("marts", "analytics", "snapshots") %}<tr><td><a href="#{{ v.anchor(tb.id) }}"><code>{{ tb.relation }}</code></a></td>
<td><ul class="names">{% for u in tb.upstream %}<li><a href="#{{ v.anchor(u) }}">{{ m.label(u) }}</a></li>{% endfor %}</ul></td>
<td><ul class="names">{% for u in tb.raw_sources %}<li><a href="#{{ v.anchor(u) }}">{{ m.label(u) }}</a></li>{% endfor %}</ul></td>
<td><ul class="names">{% for s in systems_of[tb.id] %}<li>{{ s }}</li>{% endfor %}</ul></td><td>{{ audiences_of.get(tb.id, [])|join(", ") or "—" }}</td></tr>{% endfor %}
</table>
<h3>{{ t("audiences") }} → {{ t("destinations") }}</h3>
{% if m.audiences %}<table><tr><th>{{ t("audience") }}</th><th>{{ t("tables") }}</th><th>{{ t("destinations") }}</th><th>{{ t("description") }}</th><th>{{ t("file") }}</th></tr>
{% for a in m.audiences %}<tr><td><b>{{ a.name }}</b></td><td>{% for u in a.tables %}<a href="#{{ v.anchor(u) }}">{{ m.label(u) }}</a>{% if not loop.last %}, {% endif %}{% endfor %}</td>
<td>{{ a.destinations|join(", ") or "—" }}</td><td>{{ a.description }}</td><td><code>{{ a.file }}</code></td></tr>{% endfor %}</table>
{% else %}<p>{{ t("none_defined") }}</p>{% endif %}

<h2 id="s7">{{ t("s7") }}</h2>
<table><tr><th>{{ t("layer") }}</th><th>{{ t("n_tables") }}</th><th>{{ t("dbt_tests") }}</th><th>{{ t("gx_checks") }}</th><th>{{ t("no_checks_yet") }} (GX)</th></tr>
{% for row in check_summary %}<tr><td>{{ v.layer(row[0], lang) }}</td><td class="num">{{ row[1] }}</td><td class="num">{{ row[2] }}</td><td class="num">{{ row[3] }}</td><td class="num">{{ row[4] }}</td></tr>{% endfor %}
</table>
<p>{{ t("gx_suites_found") }}: {{ m.suites|length }}</p>
<h3>{{ t("gate_results") }}</h3>
<p class="note">{{ t("gate_results_note") }}</p>
{% if m.gate_results %}<table><tr><th>{{ t("layer") }}</th><th>{{ t("gate_validated_at") }}</th><th>{{ t("gate_result") }}</th><th>{{ t("gx_suites_found") }}</th><th>{{ t("gate_rows") }}</th><th>{{ t("gate_failed") }}</th><th>{{ t("gate_warnings") }}</th></tr>
{% for g in m.gate_results %}<tr><td>{{ v.layer(g.layer, lang) }}</td><td>{{ g.validated_at }}</td><td{% if not g.success %} class="missing"{% endif %}>{{ t("gate_passed") if g.success else t("gate_failed_word") }}</td>
<td class="num">{{ g.suites }}</td><td class="num">{{ "{:,}".format(g.rows_validated) }}</td>
<td>{% if g.failed_expectations %}<ul class="names">{% for f in g.failed_expectations %}<li><code>{{ f }}</code></li>{% endfor %}</ul>{% else %}—{% endif %}</td>
<td>{% if g.warnings %}<ul class="names">{% for f in g.warnings %}<li><code>{{ f }}</code></li>{% endfor %}</ul>{% else %}—{% endif %}</td></tr>{% endfor %}
</table>{% else %}<p>{{ t("gate_not_run") }}</p>{% endif %}
{% if m.unmatched_suites %}<h4>{{ t("unmatched_suites") }}</h4><ul>{% for s in m.unmatched_suites %}<li><code>{{ s }}</code></li>{% endfor %}</ul>{% endif %}

<h2 id="s8">{{ t("s8") }}</h2>
<p class="note">{{ t("gaps_note") }}</p>
{% set any_gap = namespace(found=false) %}
{% for kind, items in m.gaps.items() if items %}{% set any_gap.found = true %}
<details><summary>{{ t("gap_" ~ kind) }}: {{ items|length }}</summary><ul>{% for i in items %}<li><code>{{ i }}</code></li>{% endfor %}</ul></details>
{% endfor %}
{% if not any_gap.found %}<p>{{ t("no_gaps") }}</p>{% endif %}
<p class="note"><a href="#top">↑</a></p>
</body></html>
"""
