"""``--workers``, ``--scheduler`` and ``--scheduler-timeout``: where a campaign's batches run
(``softerror campaign`` and ``softerror vit campaign``)."""

import argparse
import logging

from sim.cli.usage import UsageError, int_range

__all__ = ["add_executor_options", "check_executor_arguments", "quiet_distributed",
           "CampaignFailed"]


class CampaignFailed(Exception):
    """A campaign that could not go on: one line, exit status 1."""


def _seconds(text):
    """An argparse type: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, not {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


def add_executor_options(parser):
    parser.add_argument("--workers", type=int_range(1, 1024),
                        help="local worker processes (default 1, in this process)")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler "
                                                               "(tcp://HOST:PORT)")
    parser.add_argument("--scheduler-timeout", type=_seconds, default=60.0,
                        metavar="SECONDS", help="how long to wait for the Dask scheduler "
                                                "and for a worker to join (default 60)")


def check_executor_arguments(args):
    """Refuse options that do not go together (before any work)."""
    from sim.campaign.executors import check_executor_options
    try:
        check_executor_options(args.workers, args.scheduler, args.scheduler_timeout)
    except (TypeError, ValueError) as error:
        raise UsageError(str(error)) from None
    if args.scheduler is not None:
        quiet_distributed()


def quiet_distributed():
    """distributed (and tornado and asyncio under it) log a lost scheduler as tracebacks;
    the campaign says it in one line."""
    import distributed  # noqa: F401 -- it sets its loggers' levels when imported
    for name in ["distributed", "tornado", "asyncio", *logging.root.manager.loggerDict]:
        if name.startswith(("distributed", "tornado", "asyncio")):
            logging.getLogger(name).setLevel(logging.CRITICAL)
