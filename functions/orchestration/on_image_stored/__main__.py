"""on-image-stored: catalog the stored scan by content hash; one job per active measure version."""

from qmroct.orchestration.context import context_for
from qmroct.orchestration.ingest import on_image_stored


def main(args: dict) -> dict:
    return on_image_stored(context_for(args), args).model_dump()
