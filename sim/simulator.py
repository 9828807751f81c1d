"""Launch cocotb testbenches on a compiled Verilator model and exchange JSON with them.

Two ways to talk to a testbench:

* One shot (:func:`run_testbench`): the outer process writes a request file, runs the
  model binary to completion and reads the response file the testbench wrote.
* A session (:class:`SimulatorSession`): the model keeps running and serves requests sent
  as JSON lines over a pipe, answering on another; one simulator process serves many
  batches of experiments, so its start-up (Python, imports, handle look-ups) is paid once.

The binary is launched directly, with the environment cocotb's runner would set, rather
than through ``cocotb_tools.runner``: that gives a timeout, a log file per run and no
``sys.exit`` on failure.
"""

import json
import os
import subprocess
from pathlib import Path

from sim import toolchain

__all__ = ["SimulationError", "run_testbench", "read_request", "write_response",
           "SimulatorSession", "SessionChannel"]

REQUEST_ENV = "SOFTERROR_REQUEST"
RESPONSE_ENV = "SOFTERROR_RESPONSE"
CHANNEL_ENV = "SOFTERROR_CHANNEL"


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
    """A running model serving a cocotb testbench that reads a :class:`SessionChannel`."""

    def __init__(self, build, test_module, work_dir, *, command_prefix=(), waves_file=None):
        """``command_prefix`` runs the model under another program (gdb, perf, valgrind);
        ``waves_file`` needs a build made with ``waves``."""
        command = [*command_prefix, str(build.binary), *_trace_arguments(build, waves_file)]
        work_dir = Path(work_dir).resolve()
        work_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = work_dir / "sim.log"
        to_sim_read, to_sim_write = os.pipe()
        from_sim_read, from_sim_write = os.pipe()
        env = toolchain.cocotb_environment(toplevel=build.toplevel, test_module=test_module,
                                           results_file=work_dir / "results.xml")
        env[CHANNEL_ENV] = f"{to_sim_read},{from_sim_write}"
        with open(self.log_path, "w") as log:
            self._process = subprocess.Popen(
                command, cwd=work_dir, env=env, stdout=log,
                stderr=subprocess.STDOUT, pass_fds=(to_sim_read, from_sim_write))
        os.close(to_sim_read)
        os.close(from_sim_write)
        self._to_sim = os.fdopen(to_sim_write, "w")
        self._from_sim = os.fdopen(from_sim_read, "r")

    def request(self, message):
        """Send one message and wait for the testbench's answer."""
        try:
            self._to_sim.write(json.dumps(message) + "\n")
            self._to_sim.flush()
            line = self._from_sim.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            self._process.wait()
            raise SimulationError(f"The simulator stopped (status {self._process.returncode}); "
                                  f"log {self.log_path}:\n{_log_tail(self.log_path)}")
        return json.loads(line)

    def close(self):
        """End the testbench (it sees the pipe close) and wait for the simulator."""
        if self._process.poll() is None:
            try:
                self._to_sim.close()
            except BrokenPipeError:
                pass
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._from_sim.close()


class SessionChannel:
    """Inside the simulator: the testbench's end of a :class:`SimulatorSession`."""

    def __init__(self):
        read_fd, write_fd = (int(fd) for fd in os.environ[CHANNEL_ENV].split(","))
        self._in = os.fdopen(read_fd, "r")
        self._out = os.fdopen(write_fd, "w")

    def receive(self):
        """The next message, or ``None`` once the session is closed."""
        line = self._in.readline()
        return json.loads(line) if line else None

    def send(self, message):
        self._out.write(json.dumps(message) + "\n")
        self._out.flush()


def read_request():
    """Inside the simulator: the request the outer process wrote."""
    return json.loads(Path(os.environ[REQUEST_ENV]).read_text())


def write_response(response):
    """Inside the simulator: hand ``response`` back, atomically."""
    path = Path(os.environ[RESPONSE_ENV])
    staging = path.with_suffix(".partial")
    staging.write_text(json.dumps(response))
    staging.replace(path)
