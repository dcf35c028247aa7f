"""A 1 Hz monitor of the stack's components: CPU, memory and I/O per component, as a time
series (CSV) and as a Prometheus text-format endpoint."""

from qmroct.monitor.sampler import Component, ComponentSample, Sampler, discover

__all__ = ["Component", "ComponentSample", "Sampler", "discover"]
