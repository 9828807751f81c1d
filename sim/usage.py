"""The error every ``softerror`` subcommand raises for a bad command-line value."""

__all__ = ["UsageError"]


class UsageError(Exception):
    """A bad command-line value; printed as one line, exit status 2."""
