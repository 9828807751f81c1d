"""Launch a cocotb testbench on a compiled Verilator model and exchange JSON with it.

The outer process writes a request file, starts the model binary with the environment
cocotb's runner would set, and reads the response file the testbench writes. Launching the
binary directly (rather than through ``cocotb_tools.runner``) gives us a timeout, a log
file per run and no ``sys.exit`` on failure.
"""

import json
import os
import subprocess
from pathlib import Path

from sim import toolchain

__all__ = ["SimulationError", "run_testbench", "read_request", "write_response"]

REQUEST_ENV = "SOFTERROR_REQUEST"
RESPONSE_ENV = "SOFTERROR_RESPONSE"


class SimulationError(RuntimeError):
    """The simulation ended without a response; the message ends with its log's tail."""


def run_testbench(build, test_module, request, work_dir, *, waves_file=None, timeout=None):
    """Run ``test_module`` (a cocotb module name) on ``build`` and return its response.

    ``work_dir`` receives ``request.json``, ``response.json``, ``sim.log`` and cocotb's
    ``results.xml``. ``waves_file`` needs a build made with ``waves=True``.
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
    command = [str(build.binary)]
    if waves_file is not None:
        if not build.waves:
            raise ValueError("A waveform needs a build made with waves=True")
        command += ["--trace", "--trace-file", str(Path(waves_file).resolve())]
    with open(log_path, "w") as log:
        try:
            subprocess.run(command, cwd=work_dir, env=env, stdout=log,
                           stderr=subprocess.STDOUT, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise SimulationError(f"Simulation exceeded {timeout} s; log {log_path}") from None
    if not response_path.exists():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
        raise SimulationError(f"Simulation wrote no response; log {log_path}:\n{tail}")
    return json.loads(response_path.read_text())


def read_request():
    """Inside the simulator: the request the outer process wrote."""
    return json.loads(Path(os.environ[REQUEST_ENV]).read_text())


def write_response(response):
    """Inside the simulator: hand ``response`` back, atomically."""
    path = Path(os.environ[RESPONSE_ENV])
    staging = path.with_suffix(".partial")
    staging.write_text(json.dumps(response))
    staging.replace(path)
