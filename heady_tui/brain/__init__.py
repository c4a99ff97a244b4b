"""The brain package: `Brain` (the facade the supervisor owns and the UI, CLI and reports use) and
`BrainHost` (what it needs from the supervisor). See docs/internals.md."""

from .core import Brain
from .host import BrainHost

__all__ = ["Brain", "BrainHost"]
