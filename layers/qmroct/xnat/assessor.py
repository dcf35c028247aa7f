"""Quality values the XNAT way: one ``xnat:qcAssessmentData`` per scan and measure version.

Why this type (NrgXnat xnat-web ``schemas/xnat/xnat.xsd``): ``xnat:qcAssessmentData`` is XNAT's
automatic QC assessor of an image session (``imageSession_ID``), whose ``scans/scan[@id]`` entries
carry per-scan ``scanStatistics``; as ``xnat:statisticsData`` these hold any number of named
numbers (``additionalStatistics[@name]``, xs:double) and named texts (``addField[@name]``). So a
scan's values sit on that scan, not on its session, where OD and OS, line and ring, would
overwrite each other (session custom fields are one name, one value). The other candidates:
``xnat:qcManualAssessorData`` with ``xnat:qcScanData`` is the *manual* rating form (rater,
pass, free fields only), and scan-level custom fields (1.8+ JSON ``custom_fields``, a jsonb
column) are outside XNAT's schema-driven search. ``xnat:qcAssessmentData`` is a data type of
that search (``/data/search/elements``), its scans and statistics are schema fields of it, so a
search on it can select by session, scan and value; how XNAT's search engine joins the nested
``additionalStatistics[@name]`` rows has not been tried on a real XNAT here.

One assessor per (scan, measure, version), with a single ``scans/scan``, rather than one per
version holding every scan of the session: the callbacks of a session's scans run in parallel,
and a shared assessor would be a read-modify-write race that loses a scan's values. Each
version's assessor is written once and kept; a newer version leaves the older one in XNAT,
marked ``current = false`` with ``superseded_by``, so archived values stay in XNAT too.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable

from pydantic import BaseModel, Field

from qmroct.results import ResultStatus, StoredResult, Verdict

XSI_TYPE = "xnat:qcAssessmentData"
XNAT_NS = "http://nrg.wustl.edu/xnat"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
ASSESSOR_TYPE = "qmroct"  # the assessor's @type: who computed it
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_RANK = {Verdict.PASS: 1, Verdict.WARN: 2, Verdict.FAIL: 3}


class ScanQC(BaseModel):
    """One scan's values of one measure version, as they sit in its assessor."""

    scan: str
    statistics: dict[str, float] = Field(default_factory=dict)
    fields: dict[str, str] = Field(default_factory=dict)


def label_part(text: str) -> str:
    """XNAT labels allow letters, digits, ``_`` and ``-`` only."""
    return _LABEL_UNSAFE.sub("_", text).strip("_") or "x"


def assessor_label(session: str, scan: str, measure: str, version: str) -> str:
    """Unique in the project (XNAT's rule for experiment labels): session, scan, measure, version."""
    parts = (session, scan, "qmroct", measure, "v" + version)
    return "_".join(label_part(p) for p in parts)[:255]


def name_part(text: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_")


def scan_qc(scan: str, result: StoredResult) -> ScanQC:
    """A result's numbers as statistics, everything else (flags, verdicts, state) as fields."""
    qc = ScanQC(scan=scan)
    f = qc.fields
    f["measure"] = result.measure
    f["version"] = result.version
    f["status"] = str(result.status.value)
    f["current"] = "true" if result.current else "false"
    if result.code_digest:
        f["code_digest"] = result.code_digest
    if result.superseded_by:
        f["superseded_by"] = result.superseded_by
    if result.failure:
        f["failure"] = result.failure[:1000]
    if result.status == ResultStatus.OK:
        for key, value in result.values.items():
            name = name_part(key)
            if isinstance(value, bool):
                f[name] = "true" if value else "false"
            elif isinstance(value, int | float) and math.isfinite(float(value)):
                qc.statistics[name] = float(value)
            elif value is not None:
                f[name] = str(value)  # text, or NaN/inf (not an xs:double XNAT can store)
        for v in result.verdicts:
            f[f"oscar_{name_part(v.criterion)}"] = v.verdict.value
    return qc


def worst_verdicts(results: Iterable[StoredResult]) -> dict[str, str]:
    """OSCAR-IB criterion -> worst current verdict over all measures (fail over warn over pass)."""
    worst: dict[str, Verdict] = {}
    for r in results:
        if not r.current or r.status != ResultStatus.OK:
            continue
        for v in r.verdicts:
            if v.verdict in _RANK and _RANK[v.verdict] > _RANK.get(worst.get(v.criterion), 0):
                worst[v.criterion] = v.verdict
    return {k: v.value for k, v in sorted(worst.items())}


def _format(value: float) -> str:
    return repr(float(value))


def assessor_xml(
    *, label: str, project: str, session_id: str, qc: ScanQC, date: str | None = None
) -> bytes:
    """The assessor's XML document, elements in xnat.xsd's sequence order (experimentData's
    date, then imageAssessorData's imageSession_ID, then qcAssessmentData's scans)."""
    ET.register_namespace("xnat", XNAT_NS)
    ET.register_namespace("xsi", XSI_NS)
    root = ET.Element(
        f"{{{XNAT_NS}}}QCAssessment",
        {"ID": "", "label": label, "project": project, "type": ASSESSOR_TYPE},
    )
    if date:
        ET.SubElement(root, f"{{{XNAT_NS}}}date").text = date
    ET.SubElement(root, f"{{{XNAT_NS}}}imageSession_ID").text = session_id
    scans = ET.SubElement(root, f"{{{XNAT_NS}}}scans")
    scan = ET.SubElement(scans, f"{{{XNAT_NS}}}scan", {"id": qc.scan})
    stats = ET.SubElement(
        scan, f"{{{XNAT_NS}}}scanStatistics", {f"{{{XSI_NS}}}type": "xnat:statisticsData"}
    )
    for name, value in sorted(qc.statistics.items()):
        ET.SubElement(stats, f"{{{XNAT_NS}}}additionalStatistics", {"name": name}).text = _format(
            value
        )
    for name, text in sorted(qc.fields.items()):
        ET.SubElement(stats, f"{{{XNAT_NS}}}addField", {"name": name}).text = text
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _children(item: dict, name: str) -> list[dict]:
    for child in item.get("children", []):
        if child.get("field") == name:
            return list(child.get("items", []))
    return []


def qc_from_item(item: dict) -> list[ScanQC]:
    """The per-scan values of an assessor read back as XNAT's item JSON."""
    out = []
    for scan in _children(item, "scans/scan"):
        qc = ScanQC(scan=str(scan.get("data_fields", {}).get("id", "")))
        for stats in _children(scan, "scanStatistics"):
            for a in _children(stats, "additionalStatistics"):
                d = a.get("data_fields", {})
                qc.statistics[str(d.get("name", ""))] = float(d.get("additionalStatistics"))
            for a in _children(stats, "addField"):
                d = a.get("data_fields", {})
                qc.fields[str(d.get("name", ""))] = str(d.get("addField", ""))
        out.append(qc)
    return out
