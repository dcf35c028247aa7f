"""OpenWhisk action measure-pathology_flag: one scan in by presigned URL, one result out."""

from qmroct.measures.action import run_action, warm

# At /init: imports and one-off costs here, not in the first activation.
warm("pathology_flag")


def main(args: dict) -> dict:
    return run_action(args, "pathology_flag")
