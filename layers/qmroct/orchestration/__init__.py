"""Orchestration: what the on-image-stored, on-measure-published, scheduler, record-result and
derive actions do, as a library the thin action mains call."""
