"""The shell has no models of its own: API keys live in ``core.models``."""
