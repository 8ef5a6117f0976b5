"""The report as one HTML page: inline CSS and SVG, no script, nothing fetched.

Every text from outside (tags, titles, reasons, host and key names, log lines) goes
through `_esc`: control characters and escape sequences shown as text (as in the
terminal), then HTML-escaped. The page also forbids every script by its own
Content-Security-Policy, should something ever slip through.
"""

from __future__ import annotations

import html
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from assemblyzero import __version__
from assemblyzero.cost import Spend
from assemblyzero.fileio import tail_lines
from assemblyzero.ids import InvalidId, check_id
from assemblyzero.numbers import finite
from assemblyzero.report.timeline import Band, Bar, Timeline, Wait
from assemblyzero.ui.console import printable

# Attempt outcomes and their colours (the legend lists them in this order).
COLORS = {
    "done": "#2e9e5b", "failed": "#d64545", "timeout": "#8e44ad", "halted": "#e08a1e",
    "interrupted": "#7f8c8d", "retried": "#e6b800", "unfinished": "#5b8def",
}
WHAT = {
    "done": "done", "failed": "failed", "timeout": "timed out", "halted": "halted (needs a "
    "human)", "interrupted": "interrupted", "retried": "ended by a 429, 401/403 or a lost "
    "host, then ran again", "unfinished": "still running when the journal ends",
}
UNFINISHED = ("failed", "timeout", "halted", "interrupted")
ORDER = {s: i for i, s in enumerate(("failed", "timeout", "halted", "interrupted", "skipped",
                                     "done"))}
WIDTH, LEFT, RIGHT = 1180, 150, 16  # the timeline's width and margins (SVG units = px)
TAIL_LINES = 12  # log lines shown per failed item
TAILS_MAX = 100  # failed items whose log tails are read (the rest: the table)
CHAR_PX = 6.6  # width of one character of an 11 px label, about
KEY_HEADS = {  # what the keys table's time columns count (as the terminal summary's)
    "time waited": "inside attempts: for the key's budget, or for a 429 rest waited out there",
    "time rested": "429 rests that ended an attempt, until the key was free again"}
TEXT_MAX = 2000  # characters of one name, title or reason from outside shown
KEYS_MAX = 50  # key rows drawn on the timeline (the keys table lists every key)
TAIL_MIN = 0.05  # seconds of idle slots at the end below which no tail is shown


def _esc(value: Any) -> str:
    """Text from outside as HTML text or an attribute value: printable, at most TEXT_MAX
    characters, escaped."""
    text = printable(str(value)[:TEXT_MAX + 1])
    return html.escape(text if len(text) <= TEXT_MAX else text[:TEXT_MAX] + "…", quote=True)


def _int(value: Any) -> int | None:
    return value if type(value) is int and abs(value) < 1 << 53 else None



def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.1f}s"
    minutes, seconds = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def _cost(value: Any) -> str:
    if not isinstance(value, dict):
        return "-"
    spend = Spend.read([value.get("priced_usd"), value.get("unpriced_calls")])
    return spend.shown() if spend else "-"


def _tokens(value: Any) -> str:
    if isinstance(value, list) and len(value) == 2 and all(_int(n) is not None for n in value):
        return f"{value[0]}/{value[1]}"
    return "-"


class Page:
    """One run's page: its timeline, and summary.json when the run wrote one."""

    def __init__(self, line: Timeline, summary: dict[str, Any] | None, run_dir: Path,
                 root: Path, run_id: str, problems: list[str]) -> None:
        self.line, self.summary, self.run_dir, self.root = line, summary, run_dir, root
        self.run_id, self.problems = run_id, problems
        self.items = self._items()

    # --- data ---------------------------------------------------------------
    def _items(self) -> list[dict[str, Any]]:
        """The summary's items; without a summary, the journal's (status only)."""
        raw = self.summary.get("items") if self.summary else None
        if isinstance(raw, list):
            items = [i for i in raw if isinstance(i, dict) and isinstance(i.get("tag"), str)]
        else:
            last: dict[str, str] = dict(self.line.settled)
            for bar in self.line.bars:
                last[bar.item] = ("interrupted" if bar.outcome == "unfinished"
                                  and not self.line.finished else bar.outcome)
            items = [{"tag": tag, "status": "failed" if status == "retried" else status}
                     for tag, status in last.items()]
        return sorted(items, key=lambda i: (ORDER.get(str(i.get("status")), 9), i["tag"]))

    def _log(self, item: dict[str, Any]) -> Path | None:
        """The item's log: the file of that name in the run folder itself (also when the
        folder was moved since), or None."""
        log = item.get("log")
        if not isinstance(log, str) or "\0" in log:
            return None
        name = os.path.basename(log)
        if name in ("", ".", ".."):
            return None
        try:  # a plain file, never a symlink (the browser would follow it)
            plain = stat.S_ISREG(os.lstat(self.run_dir / name).st_mode)
        except OSError:
            return None
        return self.run_dir / name if plain else None

    def _log_href(self, item: dict[str, Any]) -> str | None:
        log = self._log(item)
        return quote(log.name) if log else None

    def _lineage_href(self, item: dict[str, Any]) -> str | None:
        kind, item_id = item.get("kind"), item.get("id")
        if kind not in ("lld", "issue") or not isinstance(item_id, str):
            return None
        try:
            check_id(item_id)
        except InvalidId:
            return None
        folder = self.root / "docs" / "lineage" / f"{kind}-{item_id}"
        if not folder.is_dir():
            return None
        return quote(os.path.relpath(folder, self.run_dir)) + "/"

    # --- the page -----------------------------------------------------------
    def html(self) -> str:
        title = f"assemblyzero run {self.run_id}"
        parts = [
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "style-src 'unsafe-inline'; img-src data:\">",
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
            f"<title>{_esc(title)}</title><style>{CSS}</style></head><body>",
            f"<h1>{_esc(title)}</h1>", self._head(), self._failures(),
            "<h2>Timeline</h2>", self._svg(), self._legend(),
            "<h2>Items</h2>", self._table(), self._keys(),
            f"<footer>drawn by assemblyzero {_esc(__version__)} from journal.jsonl"
            f"{' and summary.json' if self.summary else ''}; times from the run's start"
            "</footer></body></html>\n"]
        return "".join(parts)

    def _head(self) -> str:
        s, line = self.summary or {}, self.line
        wall = finite(s.get("wall_seconds")) or line.span
        busy = line.busy_seconds()
        parallel = _int(s.get("parallel")) or line.parallel
        lanes = sum(n for _, n in line.groups)
        slots = max(parallel, lanes, 1)
        efficiency = busy / (wall * slots) if wall > 0 else 0.0
        state = (f"exit {_int(s.get('exit_code'))}" if s else
                 "finished, without summary.json" if line.finished else
                 "no run-end in its journal: still running, or its coordinator died")
        counts: dict[str, int] = {}
        for item in self.items:
            status = str(item.get("status"))
            counts[status] = counts.get(status, 0) + 1
        chips = "".join(f'<span class="chip s-{_esc(k)}">{n} {_esc(k)}</span>'
                        for k, n in sorted(counts.items(), key=lambda kv: ORDER.get(kv[0], 9)))
        facts = [("command", s.get("label") or line.label or "-"), ("state", state),
                 ("started", s.get("started") or "-"),
                 ("drafter / reviewer", f"{s.get('drafter', '-')} / {s.get('reviewer', '-')}"),
                 ("wall time", _secs(wall)), ("worker time", _secs(busy) + " (every attempt)"),
                 ("speed-up", f"{busy / wall:.2f}x" if wall > 0 else "-"),
                 ("parallel efficiency", f"{efficiency:.0%} of {slots} slot(s) busy"),
                 ("cost", _cost(s.get("cost")) if s else "-")]
        if line.tail_start is not None and line.t1 - line.tail_start >= TAIL_MIN:
            last = next((b for b in line.bars if b.critical), None)
            facts.append(("tail", f"{_secs(line.t1 - line.tail_start)} with slots idle, "
                                  f"waiting on {last.item if last else '-'}"))
        rows = "".join(f"<div><span>{_esc(k)}</span><b>{_esc(v)}</b></div>" for k, v in facts)
        notes = "".join(f'<p class="problem">{_esc(p)}</p>' for p in self.problems)
        notes += "".join(f'<p class="problem">coordinator error: {_esc(e)}</p>'
                         for e in line.errors)
        return f'<div class="chips">{chips}</div><div class="facts">{rows}</div>{notes}'

    def _failures(self) -> str:
        failed = [i for i in self.items if i.get("status") in UNFINISHED]
        if not failed:
            return ""
        out = [f'<h2>Not finished ({len(failed)})</h2><div class="failures">']
        for n, item in enumerate(failed):
            path = self._log(item)
            log = f' <a href="{quote(path.name)}">log</a>' if path else ""
            head = (f'<b>{_esc(item["tag"])}</b> <span class="chip s-{_esc(item.get("status"))}">'
                    f'{_esc(item.get("status"))}</span>{log} <span class="reason">'
                    f'{_esc(item.get("reason") or "")}</span>')
            lines = tail_lines(path, TAIL_LINES) if path and n < TAILS_MAX else []
            if lines:  # the tail under the line, open while there are only a few
                out.append(f'<details class="failure"{" open" if len(failed) <= 3 else ""}>'
                           f"<summary>{head}</summary><pre>"
                           + "\n".join(_esc(x) for x in lines) + "</pre></details>")
            else:
                out.append(f'<div class="failure">{head}</div>')
        out.append("</div>")
        return "".join(out)

    def _legend(self) -> str:
        keys = "".join(f'<span><i style="background:{c}"></i>{_esc(WHAT[k])}</span>'
                       for k, c in COLORS.items())
        return (f'<div class="legend">{keys}<span><i class="hatch"></i>waiting inside the '
                'attempt for a key\'s budget or rest</span><span><i class="paused"></i>'
                'paused: no key free</span><span><i class="rest"></i>a key resting after a '
                '429</span><span><i class="tailkey"></i>the tail: slots idle, nothing left '
                'to start</span></div>')

    def _table(self) -> str:
        hosts = any(i.get("host") for i in self.items)
        head = ["item", "status", "time", "iter", "calls", "tokens", "cost", "tries", "429s",
                "key", *(["host"] if hosts else []), "files", "reason"]
        rows = ["<table class=\"items\"><thead><tr>" + "".join(f"<th>{h}</th>" for h in head)
                + "</tr></thead><tbody>"]
        for item in self.items:
            links = []
            if href := self._log_href(item):
                links.append(f'<a href="{href}">log</a>')
            if href := self._lineage_href(item):
                links.append(f'<a href="{href}">lineage</a>')
            status = str(item.get("status"))
            cells = [_esc(item["tag"]), f'<span class="chip s-{_esc(status)}">{_esc(status)}'
                     "</span>", _esc(_secs(finite(item.get("duration")))),
                     _esc(_int(item.get("iterations")) if "iterations" in item else "-"),
                     _esc(_int(item.get("model_calls")) if "model_calls" in item else "-"),
                     _esc(_tokens(item.get("tokens"))), _esc(_cost(item.get("cost"))),
                     _esc(_int(item.get("attempts")) if "attempts" in item else "-"),
                     _esc(_int(item.get("rate_limited")) if "rate_limited" in item else "-"),
                     _esc(item.get("credential") or "-"),
                     *([_esc(item.get("host") or "-")] if hosts else []),
                     " ".join(links),
                     _esc(item.get("reason") or "") if status != "done" else ""]
            rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        rows.append("</tbody></table>")
        return "".join(rows)

    def _keys(self) -> str:
        raw = self.summary.get("credentials") if self.summary else None
        waited: dict[str, float] = {}
        rested: dict[str, float] = {}
        for bar in self.line.bars:
            for w in bar.waits:
                waited[w.credential] = waited.get(w.credential, 0.0) + w.end - w.start
        for rest in self.line.rests:
            rested[rest.credential] = rested.get(rest.credential, 0.0) + rest.end - rest.start
        keys = [k for k in raw if isinstance(k, dict) and isinstance(k.get("name"), str)] \
            if isinstance(raw, list) else [{"name": n} for n in self.line.key_names()]
        if not keys:
            return ""
        head = ["key", "provider", "starts", "requests", "tokens", "cost", "429s",
                "time waited", "time rested", "disabled"]
        rows = ["<h2>Keys</h2><table class=\"items\"><thead><tr>"
                + "".join(f'<th title="{KEY_HEADS[h]}">{h}</th>' if h in KEY_HEADS
                          else f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
        for key in keys:
            name = key["name"]
            waits = finite(key.get("waited_seconds"))
            rests = finite(key.get("cooldown_seconds"))
            cells = [name, key.get("provider") or "-",
                     _int(key.get("attempts")) if "attempts" in key else "-",
                     _int(key.get("requests")) if "requests" in key else "-",
                     _tokens(key.get("tokens")), _cost(key.get("cost")),
                     _int(key.get("rate_limited")) if "rate_limited" in key else "-",
                     _secs(waits if waits is not None else waited.get(name)),
                     _secs(rests if rests is not None else rested.get(name)),
                     key.get("disabled") or "-"]
            rows.append("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in cells) + "</tr>")
        rows.append("</tbody></table>")
        return "".join(rows)

    # --- the timeline -------------------------------------------------------
    def _svg(self) -> str:
        line = self.line
        lanes = sum(n for _, n in line.groups) or 1
        row = 22 if lanes <= 24 else max(3, min(22, 520 // lanes))
        names = line.key_names()
        keys, more = names[:KEYS_MAX], len(names) - KEYS_MAX  # rows beyond: the table only
        top, plot = 6, WIDTH - LEFT - RIGHT
        slots_h = lanes * row
        key_row = 16
        keys_top = top + slots_h + (12 if keys else 0)
        axis_y = keys_top + (len(keys) + (more > 0)) * key_row + 4
        height = axis_y + 22
        scale = plot / line.span

        def x(t: float) -> float:
            return LEFT + (min(max(t, line.t0), line.t1) - line.t0) * scale

        out = [f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" '
               f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
               f'data-t0="{line.t0:.3f}" data-t1="{line.t1:.3f}" data-left="{LEFT}" '
               f'data-scale="{scale:.6f}" role="img" aria-label="timeline of the run">',
               PATTERNS]
        out += self._axis(x, top, axis_y, line)
        if line.tail_start is not None and line.t1 - line.tail_start >= TAIL_MIN:
            tx = x(line.tail_start)
            out.append(f'<rect class="tail" x="{tx:.1f}" y="{top}" width="{x(line.t1) - tx:.1f}" '
                       f'height="{slots_h}"><title>the tail: {_secs(line.t1 - line.tail_start)}'
                       ' with slots idle, nothing left to start</title></rect>')
        for pause in line.pauses:
            px = x(pause.start)
            out.append(f'<rect class="pause" x="{px:.1f}" y="{top}" '
                       f'width="{max(1.0, x(pause.end) - px):.1f}" height="{slots_h}"><title>'
                       f'paused {_secs(pause.end - pause.start)}: {_esc(pause.label)}</title>'
                       '</rect>')
        offsets, y = {}, top
        for name, count in line.groups:
            offsets[name] = y
            out += self._group_labels(name, count, y, row)
            y += count * row
        for bar in line.bars:
            out.append(self._bar(bar, offsets[bar.group] + bar.lane * row, row, x))
        if line.budget_at is not None:
            bx = x(line.budget_at)
            out.append(f'<line class="budget" x1="{bx:.1f}" x2="{bx:.1f}" y1="{top}" '
                       f'y2="{axis_y}"><title>the budget was reached</title></line>')
        rests: dict[str, list[Band]] = {}
        for rest in line.rests:
            rests.setdefault(rest.credential, []).append(rest)
        waits: dict[str, list[tuple[Bar, Wait]]] = {}
        for bar in line.bars:
            for w in bar.waits:
                waits.setdefault(w.credential, []).append((bar, w))
        if more > 0:
            out.append(f'<text class="label" x="{LEFT - 6}" '
                       f'y="{keys_top + len(keys) * key_row + 11}">+{more} keys</text>')
        for n, name in enumerate(keys):
            ky = keys_top + n * key_row
            out.append(f'<text class="label" x="{LEFT - 6}" y="{ky + 11}">'
                       f'{_esc(name[:22])}</text><rect class="keyrow" x="{LEFT}" y="{ky + 1}" '
                       f'width="{plot}" height="{key_row - 2}"/>')
            for rest in rests.get(name, ()):
                rx = x(rest.start)
                out.append(f'<rect class="rest" x="{rx:.1f}" y="{ky + 1}" '
                           f'width="{max(1.0, x(rest.end) - rx):.1f}" height="{key_row - 2}">'
                           f'<title>{_esc(rest.label)}</title></rect>')
            for bar, w in waits.get(name, ()):
                wx = x(w.start)
                why = "rest" if w.why == "rest" else "budget"  # a rest: red
                out.append(f'<rect class="keywait why-{why}" x="{wx:.1f}" y="{ky + 3}" '
                           f'width="{max(1.0, x(w.end) - wx):.1f}" height="{key_row - 6}">'
                           f'<title>{_esc(bar.item)} waited {_secs(w.end - w.start)} for '
                           f'{_esc(name)}\'s {why}</title></rect>')
        out.append("</svg>")
        return f'<div class="scroll">{"".join(out)}</div>'

    def _axis(self, x: Any, top: int, axis_y: int, line: Timeline) -> list[str]:
        step = _step(line.span)
        out = [f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{axis_y}" '
               f'y2="{axis_y}"/>']
        ticks = min(int(line.span / step) + 1, 200)
        for n in range(ticks):
            tx = x(line.t0 + n * step)
            out.append(f'<line class="grid" x1="{tx:.1f}" x2="{tx:.1f}" y1="{top}" '
                       f'y2="{axis_y}"/><text class="tick" x="{tx:.1f}" y="{axis_y + 15}">'
                       f'{_tick(n * step)}</text>')
        return out

    def _group_labels(self, name: str, count: int, y: int, row: int) -> list[str]:
        out = []
        if name:
            out.append(f'<line class="group" x1="0" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}"/>')
        for lane in range(count):
            if row < 10 and lane:  # thin rows: the group's name only
                continue
            text = (f"{name} · {lane + 1}" if name else f"slot {lane + 1}") if row >= 10 \
                else (name or "slots")
            ty = y + lane * row + min(row, 22) - 7
            out.append(f'<text class="label" x="{LEFT - 6}" y="{ty}">{_esc(text[:22])}</text>')
        return out

    def _bar(self, bar: Bar, y: int, row: int, x: Any) -> str:
        pad = 2 if row >= 8 else 0.5
        bx, height = x(bar.start), max(1.0, row - 2 * pad)
        width = max(1.0, x(bar.end) - bx)
        color = COLORS.get(bar.outcome, COLORS["failed"])
        tip = (f"{bar.item}, attempt {bar.attempt}: {WHAT.get(bar.outcome, bar.outcome)}"
               f"{' (' + bar.retry + ')' if bar.retry else ''}, {_secs(bar.end - bar.start)} "
               f"from {_secs(bar.start - self.line.t0)}"
               + (f", key {', '.join(bar.credentials)}" if bar.credentials else "")
               + (f", on {bar.host}" if bar.host else "")
               + (f", queued {_secs(bar.start - bar.queued)} first" if bar.queued else "")
               + (f", waited {_secs(sum(w.end - w.start for w in bar.waits))} for keys"
                  if bar.waits else "")
               + ("; the run's tail waited on it" if bar.critical else ""))
        out = [f'<g class="attempt"><rect class="bar{" critical" if bar.critical else ""}" '
               f'data-item="{_esc(bar.item)}" data-attempt="{bar.attempt}" '
               f'data-outcome="{_esc(bar.outcome)}" data-start="{bar.start - self.line.t0:.3f}" '
               f'data-end="{bar.end - self.line.t0:.3f}" x="{bx:.2f}" y="{y + pad}" '
               f'width="{width:.2f}" height="{height}" fill="{color}">'
               f'<title>{_esc(tip)}</title></rect>']
        for w in bar.waits:
            wx = x(w.start)
            out.append(f'<rect class="wait wait-{_esc(w.why)}" x="{wx:.2f}" y="{y + pad}" '
                       f'width="{max(0.5, x(w.end) - wx):.2f}" height="{height}"/>')
        if row >= 14 and width >= CHAR_PX * len(bar.item) + 6:
            out.append(f'<text class="tag" x="{bx + 3:.1f}" y="{y + row / 2 + 4:.1f}">'
                       f'{_esc(bar.item)}</text>')
        out.append("</g>")
        return "".join(out)


def _step(span: float) -> float:
    """A round tick step giving at most about 12 ticks over `span` seconds."""
    for step in _steps():
        if span / step <= 12:
            return step
    return span / 12


def _steps() -> Iterable[float]:
    yield from (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600,
                7200, 10800, 21600, 43200, 86400, 172800, 604800)


def _tick(t: float) -> str:
    if t < 60:
        return f"{t:g}s"
    if t < 3600:
        minutes, seconds = divmod(round(t), 60)
        return f"{minutes}m{seconds:02d}" if seconds else f"{minutes}m"
    hours, rest = divmod(round(t), 3600)
    return f"{hours}h{rest // 60:02d}" if rest // 60 else f"{hours}h"


PATTERNS = (
    '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
    'patternTransform="rotate(45)"><rect width="3" height="6" fill="#000" '
    'fill-opacity="0.35"/></pattern></defs>')

CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1f2328;
background:#fff}
h1{font-size:20px;margin:0 0 8px}h2{font-size:16px;margin:24px 0 8px}
table{border-collapse:collapse}th,td{text-align:left;padding:3px 10px 3px 0;vertical-align:top}
table.items{font-size:13px;font-variant-numeric:tabular-nums}
table.items thead th{border-bottom:1px solid #d0d7de}table.items td{border-bottom:1px solid #eee}
.facts{display:flex;flex-wrap:wrap;gap:6px 22px;margin:6px 0 4px}.facts div{display:flex;
flex-direction:column}.facts span{font-size:12px;color:#57606a}.facts b{font-weight:600}
.chips{margin:4px 0 10px}.chip{display:inline-block;padding:0 7px;border-radius:9px;
font-size:12px;color:#fff;background:#57606a;margin-right:4px}
.s-done{background:#2e9e5b}.s-failed{background:#d64545}.s-timeout{background:#8e44ad}
.s-halted{background:#e08a1e}.s-interrupted{background:#7f8c8d}.s-skipped{background:#aab2bb}
.s-retried{background:#c9a000}.s-unfinished{background:#5b8def}
.failures{max-height:24em;overflow:auto}
.failure{border-left:3px solid #d64545;padding:3px 10px;margin:4px 0;background:#fdf4f4}
.failure summary{cursor:pointer}
.reason{color:#57606a;overflow-wrap:anywhere}
pre{background:#f6f8fa;padding:6px 8px;margin:6px 0 0;font-size:12px;white-space:pre-wrap;
overflow-wrap:anywhere;max-height:18em;overflow:auto}
.problem{color:#9a3412}.scroll{overflow-x:auto}
svg.timeline{font:11px system-ui,sans-serif;max-width:none}
svg .label{text-anchor:end;fill:#57606a}svg .tick{text-anchor:middle;fill:#57606a}
svg .grid{stroke:#eaeef2}svg .axis{stroke:#8c959f}svg .group{stroke:#d0d7de}
svg .tag{fill:#fff;pointer-events:none}
svg .bar{stroke:#fff;stroke-width:0.5}svg .bar.critical{stroke:#1f2328;stroke-width:1.5}
svg .wait{fill:url(#hatch)}svg .pause{fill:#8c959f;fill-opacity:0.18}
svg .tail{fill:#f0b429;fill-opacity:0.12}svg .keyrow{fill:#f6f8fa}
svg .rest{fill:#d64545;fill-opacity:0.55}svg .keywait{fill:#e6b800;fill-opacity:0.8}
svg .keywait.why-rest{fill:#d64545;fill-opacity:0.55}
svg .budget{stroke:#d64545;stroke-width:1.5;stroke-dasharray:4 3}
.legend{font-size:12px;color:#57606a;margin:6px 0}.legend span{margin-right:14px;
white-space:nowrap}.legend i{display:inline-block;width:12px;height:10px;margin-right:4px;
vertical-align:-1px}.legend i.hatch{background:repeating-linear-gradient(45deg,#2e9e5b 0 3px,
#1d6b3d 3px 6px)}.legend i.paused{background:#d9dde1}.legend i.rest{background:#e68f8f}
.legend i.tailkey{background:#fdf1d4}
footer{margin-top:24px;font-size:12px;color:#8c959f}
"""
