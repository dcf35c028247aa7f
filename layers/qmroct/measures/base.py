"""The contract every quality measure implements.

A measure is a class with a name, a semantic version, the OSCAR-IB letters it covers, and a
pydantic ``Params`` model. ``compute`` is pure: a Scan in, a MeasureOutput (values, verdicts and
picture bytes) out. No I/O: the action (or ``qmroct measure run``) reads the scan and stores the
picture.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from importlib import import_module
from importlib.util import find_spec
from typing import ClassVar

from pydantic import BaseModel

from qmroct.oct.model import Scan
from qmroct.results import Criterion, MeasureOutput


class NoParams(BaseModel):
    pass


class Measure(ABC):
    name: ClassVar[str]
    version: ClassVar[str]
    criteria: ClassVar[tuple[Criterion, ...]]
    Params: ClassVar[type[BaseModel]] = NoParams
    # Derived products this measure reads (e.g. "segmentation"); the scheduler waits for them.
    requires: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def compute(
        self, scan: Scan, params: BaseModel, inputs: dict[str, object] | None = None
    ) -> MeasureOutput:
        """Compute the measure on one scan. ``inputs`` holds derived products by name."""

    def parse_params(self, raw: dict | None) -> BaseModel:
        return self.Params.model_validate(raw or {})


_REGISTRY: dict[str, type[Measure]] = {}


def register(cls: type[Measure]) -> type[Measure]:
    """Class decorator: make a measure known to ``qmroct measure list`` and the pipeline."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"measure {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def registry() -> dict[str, type[Measure]]:
    # Importing the suite registers every measure; done lazily to keep action start-up small.
    import qmroct.measures.suite  # noqa: F401

    return dict(_REGISTRY)


def get_measure(name: str) -> Measure:
    """The measure ``name``. One not registered yet is looked for in its own module of the
    suite (``qmroct.measures.<name>``) first: a measure action needs its measure, not the
    other eight and all they import."""
    cls = _REGISTRY.get(name)
    if cls is None and name.isidentifier() and find_spec(f"qmroct.measures.{name}") is not None:
        import_module(f"qmroct.measures.{name}")
        cls = _REGISTRY.get(name)
    if cls is None:
        cls = registry().get(name)
    if cls is None:
        known = ", ".join(sorted(registry())) or "none"
        raise KeyError(f"unknown measure {name!r} (known: {known})")
    return cls()
