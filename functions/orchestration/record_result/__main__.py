"""record-result: validate and store a measure's result, archive the superseded one, finish the
job, queue the XNAT push and wake the scheduler."""

from qmroct.orchestration.context import context_for
from qmroct.orchestration.recording import record_result


def main(args: dict) -> dict:
    return record_result(context_for(args), args).model_dump()
