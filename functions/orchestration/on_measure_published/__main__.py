"""on-measure-published: register (or retire) the measure version; backfill every stored scan."""

from qmroct.orchestration.context import context_for
from qmroct.orchestration.publication import on_measure_published


def main(args: dict) -> dict:
    reports = on_measure_published(context_for(args), args)
    return {"publications": [r.model_dump() for r in reports]}
