"""OpenWhisk action measure-beam_placement: one scan in by presigned URL, one result out."""

from qmroct.measures.action import run_action, warm

# At /init: imports and one-off costs here, not in the first activation.
warm("beam_placement")


def main(args: dict) -> dict:
    return run_action(args, "beam_placement")
