"""heady: keyboard-driven console for a fleet of machines running LLM coding agents."""

__version__ = "0.1.0"
