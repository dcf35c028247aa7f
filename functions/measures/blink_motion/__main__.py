"""OpenWhisk action measure-blink_motion: one scan in by presigned URL, one result out."""

from qmroct.measures.action import run_action, warm

# At /init: imports and one-off costs here, not in the first activation.
warm("blink_motion")


def main(args: dict) -> dict:
    return run_action(args, "blink_motion")
