"""OpenWhisk action measure-completeness: one scan in by presigned URL, one result out."""

from qmroct.measures.action import run_action, warm

# At /init: imports and one-off costs here, not in the first activation.
warm("completeness")


def main(args: dict) -> dict:
    return run_action(args, "completeness")
