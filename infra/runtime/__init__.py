"""The embedded OpenWhisk runtime: containers speaking the runtime protocol, an invoker with warm
reuse and the memory cap, a controller with sequences, triggers and rules, and the REST API.

``EmbeddedWhisk(manifest, home, env)`` composes all of it from manifest.yaml.
"""

from qmroct.runtime.whisk import EmbeddedWhisk

__all__ = ["EmbeddedWhisk"]
