"""iotrace: see how a Linux program does I/O."""

__version__ = "0.1.0"
