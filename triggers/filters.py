"""Which MinIO events start work: real object creations, in the right bucket, under the right
prefix and suffix, with a key that passes :func:`qmroct.storage.buckets.validate_key`.

MinIO's ``--event put`` also sends ``PutTagging``, ``DeleteTagging``, ``PutRetention`` and
``PutLegalHold`` as ``s3:ObjectCreated:*``; passing those on would re-run the pipeline every
time someone tags a scan, so they are dropped here.
"""

from __future__ import annotations

from typing import NamedTuple

from pydantic import BaseModel
from qmroct.errors import InvalidKey
from qmroct.events import EventLog, ObjectEvent
from qmroct.storage.buckets import validate_key

CREATION_EVENTS = frozenset(
    {
        "s3:ObjectCreated:Put",
        "s3:ObjectCreated:Post",
        "s3:ObjectCreated:Copy",
        "s3:ObjectCreated:CompleteMultipartUpload",
    }
)


class Route(BaseModel):
    """Objects created in ``bucket`` under ``prefix`` with one of ``suffixes`` (any when
    empty) fire ``trigger``."""

    bucket: str
    trigger: str
    prefix: str = ""
    suffixes: tuple[str, ...] = ()

    def matches(self, obj: ObjectEvent) -> bool:
        if obj.bucket != self.bucket or not obj.key.startswith(self.prefix):
            return False
        return not self.suffixes or obj.key.lower().endswith(
            tuple(s.lower() for s in self.suffixes)
        )


class Verdict(NamedTuple):
    """One record's fate: ``route`` is set when it should fire, else ``reason`` says why not."""

    obj: ObjectEvent
    route: Route | None
    reason: str


def is_creation(event_name: str) -> bool:
    return event_name in CREATION_EVENTS


def classify(log: EventLog, routes: list[Route]) -> list[Verdict]:
    """A verdict per record (keys decoded and validated)."""
    verdicts = []
    for obj in log.objects():
        if not is_creation(obj.event_name):
            verdicts.append(Verdict(obj, None, f"{obj.event_name} is not an object creation"))
            continue
        try:
            validate_key(obj.key)
        except InvalidKey as exc:
            verdicts.append(Verdict(obj, None, exc.reason))
            continue
        route = next((r for r in routes if r.matches(obj)), None)
        if route is None:
            verdicts.append(Verdict(obj, None, "no route for this bucket, prefix and suffix"))
        else:
            verdicts.append(Verdict(obj, route, ""))
    return verdicts
