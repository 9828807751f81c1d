"""Progress bars on stderr: on by default on a terminal, ``--progress`` and ``--no-progress``
to choose."""

import argparse
import sys

__all__ = ["add_progress_option", "progress_wanted", "ProgressBar"]


def add_progress_option(parser):
    """``--progress`` / ``--no-progress``; unset means: when stderr is a terminal."""
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show a progress bar on stderr (default: when stderr is a "
                             "terminal and --json is not given)")


def progress_wanted(args, stream=None):
    """Whether to draw a bar: as asked, or by default when ``stream`` (stderr) is a
    terminal and the output is not ``--json``."""
    if args.progress is not None:
        return args.progress
    stream = sys.stderr if stream is None else stream
    return stream.isatty() and not getattr(args, "json", False)


class ProgressBar:
    """A ``progress(done, total)`` callback drawing a tqdm bar on stderr; close it after."""

    def __init__(self, unit, description):
        self._unit, self._description = unit, description
        self._bar = None

    def __call__(self, done, total):
        if self._bar is None:
            from tqdm import tqdm
            self._bar = tqdm(total=total, initial=done, unit=self._unit,
                             desc=self._description, file=sys.stderr, dynamic_ncols=True,
                             smoothing=0.1)
        else:
            self._bar.update(done - self._bar.n)

    def close(self):
        if self._bar is not None:
            self._bar.close()
