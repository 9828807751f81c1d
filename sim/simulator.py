"""Launch cocotb testbenches on a compiled Verilator model and exchange messages with them.

Two ways to talk to a testbench:

* One shot (:func:`run_testbench`): the outer process writes a JSON request file, runs the
  model binary to completion and reads the JSON response file the testbench wrote.
* A session (:class:`SimulatorSession`): the model keeps running and serves requests sent
  as pickled objects over a pipe, answering on another; one simulator process serves many
  batches of experiments, so its start-up (Python, imports, handle look-ups) is paid once.
  Both ends are this package's code, so the messages are its dataclasses
  (:mod:`sim.campaign.messages`), not dicts.

The binary is launched directly, with the environment cocotb's runner would set, rather
than through ``cocotb_tools.runner``: that gives a timeout, a log file per run and no
``sys.exit`` on failure. A simulator dies with the thread that started it: the testbench
asks the kernel for a parent-death signal (:func:`die_with_parent`) when it reads its
request or opens its channel, so no simulator outlives a killed campaign.
"""

import ctypes
import json
import os
import pickle
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from sim import toolchain

__all__ = ["SimulationError", "run_testbench", "read_request", "write_response",
           "SimulatorSession", "SessionChannel", "die_with_parent"]

REQUEST_ENV = "SOFTERROR_REQUEST"
RESPONSE_ENV = "SOFTERROR_RESPONSE"
CHANNEL_ENV = "SOFTERROR_CHANNEL"
PARENT_ENV = "SOFTERROR_PARENT"
_PR_SET_PDEATHSIG = 1


def die_with_parent(signum, parent_pid):
    """Have the kernel send ``signum`` to this process when its parent dies, and send it
    now if the parent (``parent_pid``) is already gone.

    Linux only (elsewhere nothing happens). The kernel's "parent" is the *thread* that
    started this process: a simulator started from a worker thread dies with that thread.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return
    if prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signum)


def _die_with_launcher():
    """Inside the simulator: die when the process that launched it does."""
    if PARENT_ENV in os.environ:
        die_with_parent(signal.SIGKILL, int(os.environ[PARENT_ENV]))


class SimulationError(RuntimeError):
    """The simulation ended without a response; the message ends with its log's tail."""


def run_testbench(build, test_module, request, work_dir, *, waves_file=None, timeout=None):
    """Run ``test_module`` (a cocotb module name) on ``build`` and return its response.

    ``work_dir`` receives ``request.json``, ``response.json``, ``sim.log`` and cocotb's
    ``results.xml``; an error's message ends with the log's tail, so that it survives a
    temporary ``work_dir``. ``waves_file`` needs a build made with ``waves=True``.
    """
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    request_path = work_dir / "request.json"
    response_path = work_dir / "response.json"
    log_path = work_dir / "sim.log"
    response_path.unlink(missing_ok=True)
    request_path.write_text(json.dumps(request))

    env = toolchain.cocotb_environment(toplevel=build.toplevel, test_module=test_module,
                                       results_file=work_dir / "results.xml")
    env[REQUEST_ENV] = str(request_path)
    env[RESPONSE_ENV] = str(response_path)
    env[PARENT_ENV] = str(os.getpid())
    command = [str(build.binary), *_trace_arguments(build, waves_file)]
    with open(log_path, "w") as log:
        try:
            subprocess.run(command, cwd=work_dir, env=env, stdout=log,
                           stderr=subprocess.STDOUT, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise SimulationError(f"Simulation exceeded {timeout} s; log {log_path}:\n"
                                  f"{_log_tail(log_path)}") from None
    if not response_path.exists():
        raise SimulationError(f"Simulation wrote no response; log {log_path}:\n"
                              f"{_log_tail(log_path)}")
    return json.loads(response_path.read_text())


def _trace_arguments(build, waves_file):
    """The model's arguments that write a waveform to ``waves_file`` (none without one)."""
    if waves_file is None:
        return []
    if not build.waves:
        raise ValueError("A waveform needs a build made with waves=True")
    return [f"+trace-file={Path(waves_file).resolve()}"]


def _log_tail(path, lines=40):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class SimulatorSession:
    """A running model serving a cocotb testbench that reads a :class:`SessionChannel`.

    ``work_dir`` receives the simulator's log; without one, the session makes a temporary
    directory (``softerror-simulator-*``) and removes it when it ends (:meth:`close` or
    :meth:`kill`). ``waves_file`` needs a build made with ``waves``.
    """

    def __init__(self, build, test_module, work_dir=None, *, command_prefix=(),
                 waves_file=None):
        """``command_prefix`` runs the model under another program (gdb, perf, valgrind);
        such a model is not tied to this process's life (its parent is that program)."""
        command = [*command_prefix, str(build.binary), *_trace_arguments(build, waves_file)]
        self._temporary = work_dir is None
        self.work_dir = (Path(tempfile.mkdtemp(prefix="softerror-simulator-"))
                         if work_dir is None else Path(work_dir).resolve())
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.work_dir / "sim.log"
        to_sim_read, to_sim_write = os.pipe()
        from_sim_read, from_sim_write = os.pipe()
        env = toolchain.cocotb_environment(toplevel=build.toplevel, test_module=test_module,
                                           results_file=self.work_dir / "results.xml")
        env[CHANNEL_ENV] = f"{to_sim_read},{from_sim_write}"
        if not command_prefix:
            env[PARENT_ENV] = str(os.getpid())
        try:
            with open(self.log_path, "w") as log:
                self._process = subprocess.Popen(
                    command, cwd=self.work_dir, env=env,
                    stdout=log, stderr=subprocess.STDOUT,
                    pass_fds=(to_sim_read, from_sim_write))
        except BaseException:
            for fd in (to_sim_read, to_sim_write, from_sim_read, from_sim_write):
                os.close(fd)
            self._remove_work_dir()
            raise
        os.close(to_sim_read)
        os.close(from_sim_write)
        self._to_sim = os.fdopen(to_sim_write, "wb")
        self._from_sim = os.fdopen(from_sim_read, "rb")
        self._ended = False

    @property
    def pid(self):
        return self._process.pid

    def request(self, message):
        """Send one message and wait for the testbench's answer."""
        self.send(message)
        return self.receive()

    def send(self, message):
        """Send one message; :meth:`receive` waits for its answer. The simulator works
        on it meanwhile, in its own process."""
        try:
            pickle.dump(message, self._to_sim)
            self._to_sim.flush()
        except BrokenPipeError:
            self._stopped()

    def receive(self):
        """The testbench's answer to the message sent last."""
        try:
            return pickle.load(self._from_sim)
        except EOFError:
            self._stopped()

    def _stopped(self):
        self._process.wait()
        raise SimulationError(f"The simulator stopped (status {self._process.returncode});"
                              f" the end of its log:\n{_log_tail(self.log_path)}") from None

    def close(self):
        """End the testbench (it sees its input close) and wait for the simulator."""
        if self._ended:
            return
        try:
            self._to_sim.close()
        except BrokenPipeError:
            pass
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._end()

    def kill(self):
        """Stop the simulator at once, in the middle of a batch if need be."""
        if self._ended:
            return
        self._process.kill()
        self._process.wait()
        self._end()

    def _end(self):
        self._ended = True
        self._remove_work_dir()
        for pipe in (self._to_sim, self._from_sim):
            try:
                pipe.close()
            except (OSError, RuntimeError):
                pass    # RuntimeError: a signal handler interrupted a read of this pipe

    def _remove_work_dir(self):
        if self._temporary:
            shutil.rmtree(self.work_dir, ignore_errors=True)


class SessionChannel:
    """Inside the simulator: the testbench's end of a :class:`SimulatorSession`.

    The simulator ignores SIGINT (a Ctrl-C reaches the whole process group: the session's
    owner decides when it ends) and dies with the thread that started it.
    """

    def __init__(self):
        _die_with_launcher()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        read_fd, write_fd = (int(fd) for fd in os.environ[CHANNEL_ENV].split(","))
        self._in = os.fdopen(read_fd, "rb")
        self._out = os.fdopen(write_fd, "wb")

    def receive(self):
        """The next message, or ``None`` once the session is closed."""
        try:
            return pickle.load(self._in)
        except EOFError:
            return None

    def send(self, message):
        pickle.dump(message, self._out)
        self._out.flush()


def read_request():
    """Inside the simulator: the request the outer process wrote."""
    _die_with_launcher()
    return json.loads(Path(os.environ[REQUEST_ENV]).read_text())


def write_response(response):
    """Inside the simulator: hand ``response`` back, atomically."""
    path = Path(os.environ[RESPONSE_ENV])
    staging = path.with_suffix(".partial")
    staging.write_text(json.dumps(response))
    staging.replace(path)
