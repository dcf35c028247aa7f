"""An in-memory XNAT stand-in for tests: ``from xnat_standin.server import XnatStandin``."""
