"""Quality values as XNAT session custom fields.

Names are ``qc_<measure>_<key>`` (XNAT lower-cases them; anything but ``a-z0-9_`` becomes
``_``). Each measure also gives ``qc_<measure>_version`` and one ``qc_<measure>_<letter>`` per
OSCAR-IB criterion it judged; ``qc_oscar_<letter>`` is the worst verdict over all measures
(fail over warn over pass; not applicable counts for nothing).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from qmroct.results import ResultStatus, StoredResult, Value, Verdict

_UNSAFE = re.compile(r"[^a-z0-9_]+")
_RANK = {Verdict.PASS: 1, Verdict.WARN: 2, Verdict.FAIL: 3}


def field_name(*parts: str) -> str:
    name = "_".join(_UNSAFE.sub("_", p.lower()).strip("_") for p in parts if p)
    return name[:255]


def field_value(value: Value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else format(value, ".6g")
    return str(value)


def session_fields(results: Iterable[StoredResult]) -> dict[str, str]:
    """Every current value and verdict of one scan's results, as field name -> text."""
    out: dict[str, str] = {}
    worst: dict[str, Verdict] = {}
    for r in results:
        if not r.current:
            continue
        out[field_name("qc", r.measure, "version")] = r.version
        out[field_name("qc", r.measure, "status")] = str(r.status.value)
        if r.status != ResultStatus.OK:
            continue
        for key, value in r.values.items():
            text = field_value(value)
            if text is not None:
                out[field_name("qc", r.measure, key)] = text
        for v in r.verdicts:
            out[field_name("qc", r.measure, v.criterion)] = v.verdict.value
            if v.verdict in _RANK and _RANK[v.verdict] > _RANK.get(worst.get(v.criterion), 0):
                worst[v.criterion] = v.verdict
    for letter, verdict in worst.items():
        out[field_name("qc", "oscar", letter)] = verdict.value
    return out
