"""What every ``softerror`` subcommand shares: its usage error, integer options, JSON output."""

import argparse
import json

__all__ = ["UsageError", "int_range", "print_json"]


class UsageError(Exception):
    """A bad command-line value; printed as one line, exit status 2."""


def int_range(low, high):
    """An argparse type: a decimal integer from ``low`` to ``high``."""
    def parse(text):
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, not {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer from {low} to {high}, "
                                             f"not {value}")
        return value
    return parse


def print_json(value):
    """The one JSON object a ``--json`` run prints on stdout."""
    print(json.dumps(value, indent=2, sort_keys=True))
