"""xnat-callback: publish one scan's quality values, verdicts, pictures, report and archived
versions in XNAT; keep the job queued while XNAT is down."""

from qmroct.orchestration.context import context_for
from qmroct.xnat.callback import run_callback


def main(args: dict) -> dict:
    ctx = context_for(args)
    return run_callback(ctx.ledger, ctx.store, args).model_dump()
