"""scheduler: re-drive, retry and reconcile, then start measure activations up to the cap."""

from qmroct.orchestration.context import context_for
from qmroct.orchestration.scheduler import tick


def main(args: dict) -> dict:
    return tick(context_for(args)).model_dump()
