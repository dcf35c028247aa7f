"""derive-segmentation: segment one scan (read by presigned URL) and PUT the segmentation."""

from qmroct.orchestration.derive import run_derive, warm

# At /init: imports here, not in the first activation.
warm()


def main(args: dict) -> dict:
    return run_derive({**args, "measure": "segmentation"})
