"""Commands of this area."""

from __future__ import annotations

import click


def register(cli: click.Group, groups: dict[str, click.Group]) -> None:
    """Add this module's commands to the ``qmroct`` command tree."""
