"""The one-machine stack: folder store, embedded OpenWhisk and SQLite ledger, wired like production.

Imports are lazy so that ``qmroct --help`` stays fast.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EmbeddedStack", "StackOptions", "bench_stack"]


def __getattr__(name: str) -> Any:
    if name in ("EmbeddedStack", "StackOptions"):
        from qmroct.embedded import stack

        return getattr(stack, name)
    if name == "bench_stack":
        from qmroct.embedded.backfill_bench import bench_stack

        return bench_stack
    raise AttributeError(name)
