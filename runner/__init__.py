"""Ferry: a self-hosted workflow runner for Butterflow workflows."""

__version__ = "0.1.0"
