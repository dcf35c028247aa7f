"""The ``qmroct`` command. Each area registers its own commands from its own module."""

from __future__ import annotations

import importlib

import click
from qmroct import __version__

# Modules that add commands; each defines register(cli, groups).
_COMMAND_MODULES = (
    "qmroct.cli.stack_cmds",
    "qmroct.cli.runtime_cmds",
    "qmroct.cli.scan_cmds",
    "qmroct.cli.measure_cmds",
    "qmroct.cli.validate_cmds",
    "qmroct.cli.measure_dev_cmds",
    "qmroct.cli.orch_cmds",
    "qmroct.cli.gateway_cmds",
    "qmroct.cli.store_cmds",
    "qmroct.cli.monitor_cmds",
    "qmroct.cli.web_cmds",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="qmroct")
def cli() -> None:
    """qmroct: quality management for retinal OCT.

    Every OCT scan stored runs every published quality measure (OSCAR-IB criteria), each an
    OpenWhisk action. Start with `qmroct demo`; `qmroct up` keeps the embedded stack running.
    Configuration comes from QMROCT_* environment variables (see README).
    """


@cli.group()
def measure() -> None:
    """List, run, publish and retire quality measures."""


@cli.group()
def scan() -> None:
    """Inspect OCT files."""


@cli.group()
def bench() -> None:
    """Benchmarks that print figures (throughput, overhead, ratios)."""


@cli.group()
def gateway() -> None:
    """The upload gateway: de-identify, pseudonymise and upload scans from the clinic."""


GROUPS: dict[str, click.Group] = {
    "measure": measure,
    "scan": scan,
    "bench": bench,
    "gateway": gateway,
}

for _name in _COMMAND_MODULES:
    importlib.import_module(_name).register(cli, GROUPS)


if __name__ == "__main__":
    cli()
