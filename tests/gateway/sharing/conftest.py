"""The sharing tests' fixture: tests.gateway.sharing.family."""

from tests.gateway.sharing.family import family

__all__ = ["family"]
