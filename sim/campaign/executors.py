"""Where a campaign's batches run, and the loop that keeps them in flight and stores them.

One local worker runs each batch in the calling thread; several run in a process pool whose
workers die with the campaign process; a Dask scheduler address runs them on that cluster's
workers. Tile campaigns (:mod:`sim.campaign.engine`) and model campaigns
(:mod:`sim.cosim.campaign`) share them: an interrupted run (Ctrl-C, SIGTERM, an error, a
lost scheduler) stops its workers and simulators and keeps what it stored.
"""

import concurrent.futures
import contextlib
import logging
import multiprocessing
import os
import time

from sim.campaign.worker import close_sessions, prepare_pool_worker

__all__ = ["CampaignError", "check_executor_options", "open_executor", "execute"]

log = logging.getLogger(__name__)

#: How often a campaign on a Dask cluster checks that the cluster still has workers.
WORKER_CHECK_SECONDS = 5.0


class CampaignError(RuntimeError):
    """The campaign cannot go on (no Dask worker, a lost scheduler); what it stored is kept."""


def check_executor_options(workers=None, scheduler=None, scheduler_timeout=60.0):
    """Raise ``TypeError`` for a bad value, ``ValueError`` for values that do not go
    together, naming the option."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise TypeError(f"--workers must be a positive integer, not {workers!r}")
    if isinstance(scheduler_timeout, bool) or not isinstance(scheduler_timeout, (int, float)) \
            or not scheduler_timeout > 0:
        raise TypeError(f"--scheduler-timeout must be a positive number of seconds, not "
                        f"{scheduler_timeout!r}")
    if scheduler is None:
        return
    if workers is not None:
        raise ValueError("--workers and --scheduler exclude each other: the Dask cluster's "
                         "own workers run a campaign given a scheduler")
    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port
    from distributed.comm.registry import get_backend
    try:
        scheme, location = parse_address(str(scheduler))
        get_backend(scheme)
        if scheme in ("tcp", "tls") and not parse_host_port(location, 8786)[0]:
            raise ValueError(location)
    except (TypeError, ValueError):
        raise TypeError(f"--scheduler must be a Dask scheduler address such as "
                        f"tcp://HOST:PORT, not {scheduler!r}") from None


class _InlineExecutor(concurrent.futures.Executor):
    """Runs each task when it is submitted, in the calling thread: one local worker."""

    def submit(self, fn, /, *args, **kwargs):
        future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as error:
            future.set_exception(error)
        return future


@contextlib.contextmanager
def _in_this_thread():
    try:
        yield _InlineExecutor(), None
    except BaseException:
        close_sessions(kill=True)
        raise
    close_sessions()


@contextlib.contextmanager
def _local_pool(workers):
    """Worker processes that die with this one (:func:`worker.prepare_pool_worker`)."""
    executor = concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
        initializer=prepare_pool_worker, initargs=(os.getpid(),))
    try:
        yield executor, None
    except BaseException:
        # Stop the workers mid-batch (Python 3.14 calls this terminate_workers()); each
        # kills its simulators and removes their directories.
        for process in list((executor._processes or {}).values()):
            process.terminate()
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)


@contextlib.contextmanager
def _dask_cluster(scheduler, timeout):
    """The cluster's executor once a worker has joined, and a check that one remains."""
    from distributed import Client
    try:
        client = Client(scheduler, timeout=f"{timeout}s")
    except (OSError, TimeoutError) as error:
        raise CampaignError(f"--scheduler: cannot reach a Dask scheduler at {scheduler!r}: "
                            f"{error}") from None
    lost = CampaignError(f"lost the Dask scheduler at {scheduler}; the results so far are "
                         "stored: run the command again to resume")
    without_workers_since = None

    def check_workers():
        nonlocal without_workers_since
        try:
            workers = client.nthreads()
        except OSError:
            raise lost from None
        if workers:
            without_workers_since = None
        elif without_workers_since is None:
            without_workers_since = time.monotonic()
            log.info("the Dask cluster at %s has no worker left; waiting for one (at most "
                     "%g s: --scheduler-timeout)", scheduler, timeout)
        elif time.monotonic() - without_workers_since > timeout:
            raise CampaignError(f"no Dask worker at {scheduler} for {timeout:g} s "
                                "(--scheduler-timeout); the results so far are stored")

    try:
        if not client.nthreads():
            log.info("waiting for a Dask worker to join %s (at most %g s: "
                     "--scheduler-timeout)", scheduler, timeout)
            try:
                client.wait_for_workers(1, timeout=timeout)
            except TimeoutError:
                raise CampaignError(f"no Dask worker joined {scheduler} within {timeout:g} s "
                                    "(--scheduler-timeout)") from None
        yield client.get_executor(), check_workers
    except concurrent.futures.CancelledError:
        raise lost from None
    finally:
        client.close()


def open_executor(workers=None, scheduler=None, scheduler_timeout=60.0):
    """(context manager yielding ``(executor, check_workers)``, label for the run record)."""
    if scheduler is not None:
        return _dask_cluster(scheduler, scheduler_timeout), f"dask {scheduler}"
    if workers in (None, 1):
        return _in_this_thread(), "1 local"
    return _local_pool(workers), f"{workers} local"


def execute(executor, tasks, work, store, *, workers=1, check_workers=None, progress=None,
            done=0, total=None):
    """Run ``work(task)`` for every task, a few per worker in flight, and ``store(task,
    result)`` each as it completes (in this thread); ``store`` returns how many experiments
    it stored. Returns how many experiments ran; ``progress(done, total)`` is called as
    they are stored.
    """
    queue = list(reversed(tasks))
    in_flight = {}
    ran = 0
    if progress is not None:
        progress(done, total)
    try:
        while queue or in_flight:
            while queue and len(in_flight) < 2 * workers:
                task = queue.pop()
                in_flight[executor.submit(work, task)] = task
            finished, _ = concurrent.futures.wait(
                in_flight, timeout=None if check_workers is None else WORKER_CHECK_SECONDS,
                return_when="FIRST_COMPLETED")
            if not finished:
                check_workers()
            for future in finished:
                task = in_flight.pop(future)
                stored = store(task, future.result())
                ran += stored
                if progress is not None:
                    progress(done + ran, total)
    finally:
        for future in in_flight:
            future.cancel()
    return ran
