"""What every ``softerror`` subcommand shares: its usage error, integer options, output
paths checked before any work, JSON output."""

import argparse
import errno
import json
import os
import tempfile
from pathlib import Path

__all__ = ["UsageError", "int_range", "check_output_file", "check_output_directory",
           "print_json", "design_config"]


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


def _cannot_write(option, path, reason):
    return UsageError(f"{option} {str(path)!r}: cannot write: {reason}")


def _check_takes_files(option, path, folder):
    """Raise a ``UsageError`` naming ``option`` and ``path`` unless a file can be created in
    ``folder`` (it exists, is a folder, and is writable: a nameless file is made there and
    dropped)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise _cannot_write(option, path, error.strerror) from None


def check_output_file(option, path):
    """``path`` as a ``Path`` if the file ``option`` names can be written (its folder exists
    and takes files); else a ``UsageError``."""
    path = Path(path)
    if path.is_dir():
        raise _cannot_write(option, path, os.strerror(errno.EISDIR))
    _check_takes_files(option, path, path.absolute().parent)
    if path.exists() and not os.access(path, os.W_OK):
        raise _cannot_write(option, path, os.strerror(errno.EACCES))
    return path


def check_output_directory(option, path):
    """``path`` as a ``Path`` if the folder ``option`` names takes files or can be created
    (its nearest existing ancestor is a writable folder); else a ``UsageError``. Nothing is
    created: the command makes the folder once every option is checked."""
    path = Path(path)
    existing = path.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    _check_takes_files(option, path, existing)
    return path


def print_json(value):
    """The one JSON object a ``--json`` run prints on stdout."""
    print(json.dumps(value, indent=2, sort_keys=True))


def design_config(args):
    """The :class:`hw.config.AcceleratorConfig` of a command's design options (those it
    lacks take their defaults)."""
    from hw.config import AcceleratorConfig
    nonlinear = getattr(args, "nonlinear", ())
    try:
        return AcceleratorConfig(rows=args.rows, cols=args.cols, k_max=args.k_max,
                                 abft=getattr(args, "abft", "none"),
                                 range_check=getattr(args, "range_check", False),
                                 nonlinear=nonlinear,
                                 nonlinear_length=getattr(args, "nonlinear_length", 256)
                                 if nonlinear else 256,
                                 nonlinear_checkers=getattr(args, "nonlinear_checkers", True))
    except TypeError as error:
        raise UsageError(f"--nonlinear-length: {error}") from None
