"""heady-agent: the headless node agent of heady."""

__version__ = "0.1.0"
