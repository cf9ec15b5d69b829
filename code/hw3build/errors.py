"""The one base of every error the build raises: ``except BuildError`` catches any of them, and each
keeps its older base (``ValueError`` for what a user typed, ``RuntimeError`` for what a tool did)."""


class BuildError(Exception):
    """Something the build cannot do; the message says what and, where it can, what to do."""
