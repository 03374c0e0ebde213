"""HTML for the report: one self-contained page, every interpolated string escaped.

Nothing here fetches anything: styles and the table-sorting script are inline, images
are relative paths, and a Content-Security-Policy allows only this page's own script
(by hash) and images from the same folder.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .summary import fmt_number, is_accuracy, label


def esc(value: object) -> str:
    """Escape any value for HTML text or a double-quoted attribute."""
    return html.escape("" if value is None else str(value), quote=True)


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    body: str  # already-escaped HTML


@dataclass(frozen=True)
class Column:
    name: str
    header: str
    kind: str  # pct | num | int | bool | text | error


# ---------------------------------------------------------------- small pieces


def paragraphs(sentences: Iterable[str], cls: str = "") -> str:
    attr = f' class="{esc(cls)}"' if cls else ""
    return "".join(f"<p{attr}>{esc(s)}</p>" for s in sentences)


def message(text: str) -> str:
    return f'<p class="empty">{esc(text)}</p>'


def pre(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


def figure(src: str, alt: str, png: bytes, caption: str = "") -> str:
    width, height = png_size(png)
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return (
        f'<figure><img src="{esc(src)}" alt="{esc(alt)}" width="{width}" height="{height}" '
        f'loading="eager">{cap}</figure>'
    )


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    return struct.unpack(">II", png[16:24])


# ---------------------------------------------------------------- tables


def column_kind(name: str, series: pd.Series) -> str:
    if name == "error":
        return "error"
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_numeric_dtype(series):
        return "pct" if is_accuracy(name) else "num"
    return "text"


def columns_for(df: pd.DataFrame, names: Sequence[str], headers: dict[str, str] | None = None) -> list[Column]:
    headers = headers or {}
    out = []
    for name in names:
        if name not in df.columns:
            continue
        kind = column_kind(name, df[name])
        header = headers.get(name) or (f"{label(name)} (%)" if kind == "pct" else label(name))
        out.append(Column(name, header, kind))
    return out


def table(df: pd.DataFrame, columns: Sequence[Column], table_id: str = "", sortable: bool = True,
          row_class: pd.Series | None = None) -> str:
    """An HTML table; numeric cells carry their raw value in ``data-v`` for sorting."""
    id_attr = f' id="{esc(table_id)}"' if table_id else ""
    cls = "sortable" if sortable else "plain"
    head = "".join(
        f'<th data-type="{"text" if c.kind in ("text", "error") else "num"}" data-col="{esc(c.name)}" '
        f'scope="col">{esc(c.header)}</th>'
        for c in columns
    )
    cells = [_cells(df[c.name], c.kind) for c in columns]
    classes = (
        [f' class="{esc(v)}"' if v else "" for v in row_class.tolist()] if row_class is not None
        else [""] * len(df)
    )
    body = "".join(
        f"<tr{rc}>{''.join(row)}</tr>" for rc, row in zip(classes, zip(*cells))
    ) if columns else ""
    return (
        f'<div class="table-wrap"><table{id_attr} class="{cls}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _cells(series: pd.Series, kind: str) -> list[str]:
    values = series.tolist()
    if kind in ("pct", "num", "int"):
        out = []
        for v in values:
            f = _to_float(v)
            if f is None:
                out.append('<td class="n" data-v="">–</td>')
                continue
            text = f"{100 * f:.2f}" if kind == "pct" else fmt_number(int(f) if kind == "int" else f)
            out.append(f'<td class="n" data-v="{f:.10g}">{text}</td>')
        return out
    if kind == "bool":
        return [f'<td data-v="{int(bool(v))}">{"yes" if v else ""}</td>' if not _missing(v)
                else '<td data-v="">–</td>' for v in values]
    if kind == "error":
        out = []
        for v in values:
            if _missing(v) or not str(v).strip():
                out.append("<td></td>")
                continue
            text = str(v).strip()
            last = text.splitlines()[-1] if text.splitlines() else text
            short = last if len(last) <= 120 else last[:117] + "..."
            out.append(f'<td class="err" title="{esc(text[:2000])}">{esc(short)}</td>')
        return out
    return [f"<td>{'' if _missing(v) else esc(v)}</td>" for v in values]


def _missing(value: object) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _to_float(value: object) -> float | None:
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


# ---------------------------------------------------------------- the page

CSS = """
:root { --fg: #1d2329; --muted: #5d6b78; --line: #d8dee4; --accent: #0b5cad; --warn: #fff4d6; --warnline: #e0b43c; --bad: #fde8e8; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); margin: 0; }
header, main { max-width: 1400px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 18px; }
h1 { font-size: 24px; margin: 0 0 4px; word-break: break-word; }
h2 { font-size: 18px; margin: 28px 0 8px; padding-top: 8px; border-top: 1px solid var(--line); }
h3 { font-size: 15px; margin: 16px 0 6px; }
.sub { color: var(--muted); margin: 0 0 6px; }
nav { margin: 8px 0 0; font-size: 13px; }
nav a { color: var(--accent); margin-right: 12px; text-decoration: none; }
.banner { background: var(--warn); border: 1px solid var(--warnline); border-left-width: 6px; padding: 10px 14px; margin: 12px 0; font-weight: 600; }
.banner.bad { background: var(--bad); border-color: #c94a4a; }
.headline { font-size: 16px; background: #f3f7fb; border: 1px solid var(--line); padding: 12px 16px; }
.headline p { margin: 4px 0; }
.headline p.verdict { font-size: 19px; font-weight: 650; }
.rule { font-size: 12px; }
.counts span { display: inline-block; margin-right: 14px; }
.empty { color: var(--muted); font-style: italic; }
figure { margin: 8px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 12px; }
.row { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.row > * { flex: 1 1 420px; min-width: 0; }
.row > .wide { flex: 3 1 760px; }
.row > .side { flex: 1 1 400px; }
.side th, .side td { padding: 3px 5px; font-size: 11px; }
.table-wrap { overflow: auto; max-height: 70vh; border: 1px solid var(--line); }
table { border-collapse: collapse; font-size: 12px; width: max-content; min-width: 100%; }
th, td { padding: 3px 8px; border-bottom: 1px solid #eef1f4; text-align: left; white-space: nowrap; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
td.err { color: #a12622; max-width: 420px; overflow: hidden; text-overflow: ellipsis; }
thead th { position: sticky; top: 0; background: #f6f8fa; border-bottom: 1px solid var(--line); z-index: 1; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th:hover { background: #e9eef3; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
tr.failed td { background: #fdf1f1; }
tr.unfinished td { color: var(--muted); }
tr.pareto td:first-child { font-weight: 700; }
pre { background: #f6f8fa; border: 1px solid var(--line); padding: 10px; overflow: auto; max-height: 480px; font-size: 12px; white-space: pre-wrap; word-break: break-word; }
details { margin: 6px 0; }
summary { cursor: pointer; }
""".strip()

SORT_JS = """
(function () {
  "use strict";
  function key(cell) {
    var v = cell.getAttribute("data-v");
    return v === null ? cell.textContent.trim() : v;
  }
  function sortBy(table, col, th) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var keys = rows.map(function (r) { return key(r.cells[col]); });
    var numeric = th.getAttribute("data-type") === "num" ||
      keys.every(function (k) { return k === "" || isFinite(Number(k)); });
    var nums = numeric ? keys.map(Number) : null;
    var index = rows.map(function (r, i) { return i; });
    index.sort(function (a, b) {
      var x = keys[a], y = keys[b];
      if (x === "" || y === "") { return (x === "") - (y === ""); }
      var c = numeric ? nums[a] - nums[b]
                      : x.localeCompare(y, undefined, {numeric: true, sensitivity: "base"});
      if (c === 0) { return a - b; }
      return ascending ? c : -c;
    });
    var fragment = document.createDocumentFragment();
    index.forEach(function (i) { fragment.appendChild(rows[i]); });
    body.appendChild(fragment);
    Array.prototype.forEach.call(th.parentNode.cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.tabIndex = 0;
      th.title = "sort by this column";
      th.addEventListener("click", function () { sortBy(table, col, th); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, col, th); }
      });
    });
  });
})();
""".strip()


def _script_hash(script: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")


CSP = (
    "default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'; "
    f"script-src '{_script_hash(SORT_JS)}'; base-uri 'none'; form-action 'none'"
)


def render_page(
    title: str,
    subtitle_lines: Sequence[str],
    banners: Sequence[tuple[str, str]],
    sections: Sequence[Section],
) -> str:
    """The whole page. ``banners`` are (level, text) with level "warn" or "bad"."""
    nav = "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    banner_html = "".join(
        f'<div class="banner{" bad" if level == "bad" else ""}" role="status">{esc(text)}</div>'
        for level, text in banners
    )
    body = "".join(
        f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>{s.body}</section>' for s in sections
    )
    subtitle = "".join(f'<p class="sub">{esc(line)}</p>' for line in subtitle_lines if line)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n"
        f"<body><header><h1>{esc(title)}</h1>{subtitle}<nav>{nav}</nav>{banner_html}</header>\n"
        f"<main>{body}</main>\n"
        f"<script>{SORT_JS}</script>\n</body></html>\n"
    )


def row_classes(df: pd.DataFrame, pareto: pd.Series | None) -> pd.Series:
    status = df["status"].astype(str)
    cls = np.where(status == "failed", "failed", np.where(status == "finished", "", "unfinished"))
    out = pd.Series(cls, index=df.index, dtype=object)
    if pareto is not None:
        p = pareto.reindex(df.index, fill_value=False).to_numpy(dtype=bool)
        out = out.where(~p, (out + " pareto").str.strip())
    return out
