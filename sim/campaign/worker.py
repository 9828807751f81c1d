"""The worker side of a campaign: batches of experiments on a long-lived simulator.

A :class:`~sim.campaign.messages.BatchTask` is what an executor ships to a worker (the
campaign's own thread, a local process, a Dask worker). :func:`run_batch` finds (or
builds, through the build cache) the model, keeps one simulator session per thread and
configuration alive across batches, and returns what the simulator observed.

Sessions end with their owner: :func:`close_sessions` ends the calling thread's, a
process ends all of its own when it exits, and a local pool worker
(:func:`prepare_pool_worker`) also dies with the campaign process, taking its simulators
and their temporary directories with it.
"""

import multiprocessing.util
import os
import signal
import threading
from pathlib import Path

from sim.build import build_design
from sim.campaign.messages import BatchResult, BatchTask, SessionSetup
from sim.simulator import SimulatorSession, die_with_parent

__all__ = ["run_batch", "submit_batches", "start_session", "open_session", "thread_session",
           "close_sessions", "prepare_pool_worker"]

TESTBENCH = "sim.testbenches.campaign"

_local = threading.local()
_open_sessions = set()
# Reentrant: the SIGTERM handler of a pool worker takes it in the thread it interrupts.
_open_sessions_lock = threading.RLock()


def _thread_sessions():
    sessions = getattr(_local, "sessions", None)
    if sessions is None:
        sessions = _local.sessions = {}
    return sessions


def thread_session(key, open_session):
    """This thread's simulator for ``key``, opened by ``open_session()`` the first time
    and kept across batches (ended as the module's docstring says)."""
    sessions = _thread_sessions()
    if key not in sessions:
        sessions[key] = open_session()
    return sessions[key]


def _session(config, site_paths, control_paths):
    return thread_session((config, site_paths, control_paths),
                          lambda: start_session(config, site_paths, control_paths))


def open_session(build, testbench, setup, *, waves_file=None):
    """A simulator running ``testbench`` on ``build``, sent ``setup`` (its answer is
    dropped), ended with its owner (see the module's docstring)."""
    session = SimulatorSession(build, testbench, waves_file=waves_file)
    with _open_sessions_lock:
        _open_sessions.add(session)
    try:
        session.request(setup)
    except BaseException:
        _end(session, kill=True)
        raise
    return session


def start_session(config, site_paths, control_paths, *, waves_file=None):
    """A simulator ready to run experiments on these sites, ended with its owner (see
    the module's docstring); ``waves_file`` (``.vcd`` or ``.fst``): on a tracing build,
    writing its waveform there (:mod:`sim.campaign.replay`)."""
    waves = None if waves_file is None else Path(waves_file).suffix[1:]
    return open_session(build_design(config, waves=waves), TESTBENCH,
                        SessionSetup(config, site_paths, control_paths),
                        waves_file=waves_file)


def run_batch(task: BatchTask, session=None) -> BatchResult:
    """Run the task's experiments on ``session`` if given, else on this thread's simulator
    for its configuration."""
    session = session or _session(task.config, task.site_paths, task.control_paths)
    return session.request(task)


def submit_batches(tasks):
    """Send tasks of one design and site list to this thread's simulator in one message
    (a model campaign's tiles: one experiment each, mostly) and return a function that
    waits for their :class:`BatchResult` s. The simulator runs them in its own process
    while the caller goes on; until the function is called the session takes no other
    request, and a caller that gives up on it must end it
    (``close_sessions(kill=True)``)."""
    if not tasks:
        return lambda: ()
    first = tasks[0]
    session = _session(first.config, first.site_paths, first.control_paths)
    session.send(tuple(tasks))
    return session.receive


def close_sessions(*, kill=False):
    """End the calling thread's simulators (``kill``: at once, mid-batch if need be) and
    remove their temporary directories."""
    sessions = _thread_sessions()
    while sessions:
        _end(sessions.popitem()[1], kill)


def _end(session, kill):
    with _open_sessions_lock:
        _open_sessions.discard(session)
    if kill:
        session.kill()
    else:
        session.close()


def _end_all_sessions(kill=False):
    with _open_sessions_lock:
        sessions = list(_open_sessions)
    for session in sessions:
        _end(session, kill)


# Run at exit by multiprocessing's exit function, which both the main process (atexit)
# and multiprocessing's children (which skip atexit) call.
multiprocessing.util.Finalize(None, _end_all_sessions, exitpriority=10)


def prepare_pool_worker(parent_pid):
    """Initializer of a local pool process: die with the campaign process.

    The campaign process stops its workers with SIGTERM (after Ctrl-C, SIGTERM or an
    error), and the kernel sends SIGTERM when it dies (even of SIGKILL): either way the
    worker kills its simulators, removes their directories and exits. Ctrl-C, which
    reaches the whole process group, is left to the campaign process.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_pool_worker)
    die_with_parent(signal.SIGTERM, parent_pid)


def _stop_pool_worker(signum, frame):
    # The kernel sends the parent-death signal again each time the thread this process
    # was reparented to exits (the campaign process's other threads): stop only once.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        _end_all_sessions(kill=True)
    finally:
        os._exit(128 + signum)
