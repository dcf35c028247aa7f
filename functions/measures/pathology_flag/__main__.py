"""OpenWhisk action measure-pathology_flag: one scan in by presigned URL, one result out."""

from qmroct.measures.action import run_action


def main(args: dict) -> dict:
    return run_action(args, "pathology_flag")
