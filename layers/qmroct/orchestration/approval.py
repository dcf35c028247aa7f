"""From the developers' package to production: review, approve, deploy, publish.

A developer deploys ``qmroct-dev/measure-NAME`` (``qmroct measure test`` does it, or
``wsk action update ... -a qmroct-version V``). :func:`review` runs the test set on exactly that
deployed code and records the outcome by the zip's SHA-256; :func:`sweep` finds every
developer action whose annotated version is not yet published and reviews it.
:func:`approve` copies the reviewed code into the production package as ``measure-NAME``, wires
``run-NAME = [measure-NAME, record-result]``, records who approved it and when, and publishes
the version; the publication's bucket event starts the backfill over every stored scan.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from qmroct.errors import QmroctError
from qmroct.measures.devtest import (
    DevReport,
    Sandbox,
    authorised_scans,
    describe_action,
    dev_action,
    run_test_set,
)
from qmroct.measures.scaffold import DEV_PACKAGE, MEASURE_ANNOTATION, VERSION_ANNOTATION
from qmroct.orchestration.publication import MeasurePublication, publish_measure
from qmroct.storage.ledger import Ledger
from qmroct.storage.records import MeasureState
from qmroct.storage.reviews import MeasureReview, Reviews, ReviewState

Progress = Callable[[str], None] | None


class ApprovalError(QmroctError):
    """A measure version cannot be approved; the message says which and why."""


class DevAction(BaseModel):
    """A measure action in the developers' package, as the REST API lists it."""

    action: str
    measure: str
    version: str


class Approval(BaseModel):
    review: MeasureReview
    publication: MeasurePublication
    production_action: str
    sequence: str


def _annotations(entity: dict[str, Any]) -> dict[str, Any]:
    return {a.get("key"): a.get("value") for a in entity.get("annotations") or []}


def _package_of(entity: dict[str, Any]) -> str:
    # OpenWhisk reports a packaged action's namespace as "ns/pkg"; older records a package field.
    ns = str(entity.get("namespace", ""))
    return entity.get("package") or (ns.split("/", 1)[1] if "/" in ns else "")


def dev_actions(ow: Any) -> list[DevAction]:
    """Every ``measure-*`` action of the developers' package with a version annotation."""
    out = []
    for entity in ow.list_actions():
        name = str(entity.get("name", ""))
        ann = _annotations(entity)
        if _package_of(entity) != DEV_PACKAGE or not name.startswith("measure-"):
            continue
        if not ann.get(VERSION_ANNOTATION):
            continue
        measure = str(ann.get(MEASURE_ANNOTATION) or name[len("measure-") :])
        out.append(
            DevAction(
                action=f"{DEV_PACKAGE}/{name}",
                measure=measure,
                version=str(ann[VERSION_ANNOTATION]),
            )
        )
    return out


def deployed_code(ow: Any, action: str) -> tuple[dict[str, Any], str]:
    """The deployed action record and the SHA-256 of its code (the zip bytes)."""
    entity = ow.get_action(action, code=True)
    code = (entity.get("exec") or {}).get("code") or ""
    if not code:
        raise ApprovalError(f"action {action}: no code in its record")
    raw = (
        base64.b64decode(code) if (entity.get("exec") or {}).get("binary", True) else code.encode()
    )
    return entity, hashlib.sha256(raw).hexdigest()


def review(
    ledger: Ledger,
    sb: Sandbox,
    measure: str,
    version: str,
    *,
    source: str,
    data: str = "test",
    params: dict[str, Any] | None = None,
    out_dir: Path | None = None,
    progress: Progress = None,
) -> tuple[DevReport, MeasureReview]:
    """Run the test set on the deployed ``qmroct-dev/measure-NAME``; record the outcome."""
    action = dev_action(measure)
    _, sha = deployed_code(sb.ow, action)
    scans = authorised_scans(sb.store, data)  # type: ignore[arg-type]
    report = run_test_set(
        sb, action, measure, version, scans, params=params, out_dir=out_dir, progress=progress
    )
    report.code_sha256 = sha
    rec = Reviews(ledger.db).record_test(
        measure,
        version,
        sha,
        passed=report.passed,
        code_digest=report.code_digest,
        source=source,
        summary=report.summary(),
    )
    return report, rec


def sweep(ledger: Ledger, sb: Sandbox, *, progress: Progress = None) -> list[MeasureReview]:
    """Review every developer action whose (measure, version, code) is neither published nor
    reviewed yet: the path of ``wsk action update -a qmroct-version V``."""
    reviews = Reviews(ledger.db)
    done = []
    for dev in dev_actions(sb.ow):
        published = ledger.catalog.measure(dev.measure, dev.version)
        if published is not None and published.state is MeasureState.PUBLISHED:
            continue
        _, sha = deployed_code(sb.ow, dev.action)
        if reviews.get(dev.measure, dev.version, sha) is not None:
            continue
        if progress:
            progress(f"testing {dev.action} {dev.version} (code {sha[:12]})")
        _, rec = review(ledger, sb, dev.measure, dev.version, source="sweep", progress=progress)
        done.append(rec)
    return done


class SweepLoop:
    """:func:`sweep` every ``interval_s`` seconds in a background thread (``qmroct up`` runs
    one): a ``wsk action update -a qmroct-version V`` is tested without anyone asking."""

    def __init__(
        self, ledger: Ledger, sb: Sandbox, interval_s: float, *, report: Progress = None
    ) -> None:
        import threading

        self.ledger, self.sb, self.interval_s, self.report = ledger, sb, interval_s, report
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="qmroct-dev-sweep", daemon=True)

    def start(self) -> SweepLoop:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                for rec in sweep(self.ledger, self.sb):
                    if self.report:
                        self.report(
                            f"developer measure {rec.measure} {rec.version}: {rec.state.value} "
                            f"{rec.summary.get('statuses')}"
                        )
            except QmroctError as exc:  # the next round tries again; say why this one failed
                self.errors.append(str(exc))
                if self.report:
                    self.report(f"developer sweep failed: {exc}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=300)


def approve(
    ledger: Ledger,
    sb: Sandbox,
    measure: str,
    version: str,
    *,
    by: str,
    package: str = "qmroct",
    params: dict[str, Any] | None = None,
    bucket: str | None = None,
    progress: Progress = None,
) -> Approval:
    """Deploy the reviewed developer action to production and publish ``version``.

    The approval needs a passed test of exactly the deployed code (by its SHA-256); when there
    is none, the test set runs now. Refused (ApprovalError) when that test fails or when the
    version is already published or retired.
    """
    action = dev_action(measure)
    entity, sha = deployed_code(sb.ow, action)
    existing = ledger.catalog.measure(measure, version)
    if existing is not None:
        raise ApprovalError(
            f"{measure} {version} is already {existing.state.value}: approve a new version"
        )
    reviews = Reviews(ledger.db)
    # A passed test of exactly this code, under whatever version label it was tested.
    rec = reviews.latest(measure, sha, ReviewState.TESTED)
    if rec is None:
        if progress:
            progress(f"no passed test of this code yet: testing {action} on the test set")
        _, rec = review(ledger, sb, measure, version, source="approve", progress=progress)
    if rec.state is ReviewState.FAILED:
        raise ApprovalError(
            f"{measure} {version} (code {sha[:12]}) failed its test on the test set: "
            f"{rec.summary.get('statuses')}; fix it and run qmroct measure test again"
        )
    if rec.version != version:
        rec = reviews.record_test(
            measure,
            version,
            sha,
            passed=True,
            code_digest=rec.code_digest,
            source=rec.source,
            summary=rec.summary,
        )
    info = describe_action(sb.ow, action)
    if info.get("code_digest") and rec.code_digest and info["code_digest"] != rec.code_digest:
        raise ApprovalError(f"{action} changed while it was being approved; test it again")
    prod = f"{package}/measure-{measure}"
    seq = f"{package}/run-{measure}"
    ns = str(entity.get("namespace", "_")).split("/")[0] or "_"
    exec_ = {
        k: v
        for k, v in (entity.get("exec") or {}).items()
        if k in ("kind", "code", "main", "binary", "image")
    }
    ann = {**_annotations(entity), VERSION_ANNOTATION: version, "qmroct-approved-by": by}
    if progress:
        progress(f"deploying {prod} and {seq}")
    sb.ow.update_action(
        prod,
        spec={
            "exec": exec_,
            "limits": entity.get("limits") or {},
            "annotations": [{"key": k, "value": v} for k, v in ann.items()],
        },
    )
    components = [f"/{ns}/{prod}", f"/{ns}/{package}/record-result"]
    sb.ow.update_action(seq, spec={"exec": {"kind": "sequence", "components": components}})
    rec = reviews.approve(measure, version, sha, by)
    fields: dict[str, Any] = {
        "action": f"run-{measure}",
        "code_digest": rec.code_digest or info.get("code_digest", ""),
        "params_schema": info.get("params_schema") or {},
        "requires": list(info.get("requires") or []),
        "params": params or {},
    }
    kw = {"bucket": bucket} if bucket else {}
    pub = publish_measure(sb.store, measure, version, describe=False, **kw, **fields)
    return Approval(review=rec, publication=pub, production_action=prod, sequence=seq)
