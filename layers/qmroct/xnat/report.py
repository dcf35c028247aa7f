"""The per-scan HTML report stored in XNAT next to the pictures: one self-contained page."""

from __future__ import annotations

from html import escape

from qmroct.results import StoredResult


def scan_report(scan_label: str, scan_hash: str, results: list[StoredResult]) -> str:
    rows = []
    for r in sorted(results, key=lambda r: (r.measure, not r.current, str(r.recorded_at))):
        values = ", ".join(f"{escape(k)} = {escape(str(v))}" for k, v in r.values.items())
        verdicts = ", ".join(f"{v.criterion}: {v.verdict.value}" for v in r.verdicts)
        state = "current" if r.current else f"archived ({escape(r.superseded_reason or '')})"
        rows.append(
            "<tr>"
            f"<td>{escape(r.measure)}</td><td>{escape(r.version)}</td><td>{state}</td>"
            f"<td>{escape(r.status.value)}</td><td>{values}</td><td>{escape(verdicts)}</td>"
            f"<td>{escape(r.failure or '')}</td>"
            + (
                f'<td><img src="{escape(r.measure)}.png" alt="{escape(r.measure)}" width="320"></td>'
                if r.current and r.picture_stored
                else "<td></td>"
            )
            + "</tr>"
        )
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>qmroct: {escape(scan_label)}</title>"
        "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:4px}"
        "table{border-collapse:collapse}</style></head><body>"
        f"<h1>OCT quality: {escape(scan_label)}</h1><p>content sha256 {escape(scan_hash)}</p>"
        "<table><tr><th>measure</th><th>version</th><th>state</th><th>status</th>"
        "<th>values</th><th>OSCAR-IB</th><th>error</th><th>picture</th></tr>"
        + "".join(rows)
        + "</table></body></html>\n"
    )
