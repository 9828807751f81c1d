"""Generate, Verilate and compile one accelerator configuration, cached by content.

A build directory is keyed by a hash of the design parameters, the generator's and this
build step's source, the tool versions and the flags, so a test suite builds each
configuration once, a second ``make sim`` does not rebuild, and a changed generator never
reuses a stale model. Concurrent builders of the same key (campaign workers, pytest
processes) wait on a file lock; a build is assembled in a temporary directory and renamed
into place only when it is complete.

Unlike cocotb's runner, this step does not pass ``--public-flat-rw``: only the top-level
ports and the signals listed by :func:`public_signals` are visible to cocotb, which keeps
the model fast.
"""

import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import hw
from hw.accelerator import GemmAccelerator
from hw.generate import TOP_NAME, generate_verilog
from hw.register_map import RegisterMap
from hw.tile_controller import busy_cycles
from hw.validation import check_int
from sim import toolchain

__all__ = ["DesignConfig", "Build", "BuildError", "build_design", "cache_root"]

logger = logging.getLogger("softerror.build")

VERILATOR_FLAGS = [
    "-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert",
    "-Wno-fatal", "-Wno-lint", "-Wno-style",
    "-CFLAGS", "-std=c++20",
]
_READY = "BUILD_OK"


class BuildError(RuntimeError):
    """Verilator or the C++ compiler failed; the message ends with the tail of its log."""


@dataclass(frozen=True)
class DesignConfig:
    """The generator parameters of one accelerator configuration."""
    rows: int = 8
    cols: int = 8
    k_max: int = 256

    def __post_init__(self):
        GemmAccelerator.check_parameters(rows=self.rows, cols=self.cols, k_max=self.k_max)

    def accelerator(self) -> GemmAccelerator:
        """The Amaranth component (for generation; elaborating it is the costly part)."""
        return GemmAccelerator(rows=self.rows, cols=self.cols, k_max=self.k_max)

    @property
    def register_map(self) -> RegisterMap:
        return RegisterMap(self.rows, self.cols, self.k_max)

    def tile_cycles(self, k):
        """Busy cycles of one tile, by the generator's own timing (see ``GemmAccelerator``)."""
        check_int("K", k, 1, self.k_max)
        return busy_cycles(self.rows, self.cols, k)

    @property
    def label(self):
        return f"{self.rows}x{self.cols}-k{self.k_max}"


#: Waveform formats a build can trace, and the Verilator flags for each.
TRACE_FLAGS = {"fst": ["--trace-fst", "--trace-structs"], "vcd": ["--trace", "--trace-structs"]}


@dataclass(frozen=True)
class Build:
    """A compiled, cocotb-enabled Verilator model."""
    config: DesignConfig
    directory: Path
    waves: str | None
    """Waveform format the model can write (``"fst"``, ``"vcd"``), or ``None``: no tracing."""
    seconds: float
    """Wall time the build took when it was made (0 is never stored: it is a real build)."""

    @property
    def binary(self) -> Path:
        return self.directory / TOP_NAME

    @property
    def verilog(self) -> Path:
        return self.directory / "design.v"

    @property
    def toplevel(self) -> str:
        return TOP_NAME


def cache_root() -> Path:
    """``$SOFTERROR_BUILD_DIR``, or ``~/.cache/softerror/builds``."""
    configured = os.environ.get("SOFTERROR_BUILD_DIR")
    if configured:
        return Path(configured).expanduser().resolve()
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "softerror" / "builds"


def _source_digest():
    """Hash of the generator (every ``hw`` module) and of this build step."""
    digest = hashlib.sha256()
    sources = sorted(Path(hw.__file__).parent.glob("*.py"))
    sources += [Path(__file__), Path(toolchain.__file__)]
    for path in sources:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _build_key(config, waves):
    description = {
        "design": asdict(config),
        "waves": waves,
        "flags": VERILATOR_FLAGS,
        "versions": toolchain.versions(),
        "sources": _source_digest(),
    }
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:16]


def public_signals(accelerator):
    """(module, signal) pairs cocotb may reach: the top-level ports, clock and reset."""
    ports = ["clk", "rst", *accelerator.signature.members.keys()]
    return [(TOP_NAME, port) for port in ports]


def _control_file(signals):
    lines = ["`verilator_config"]
    lines += [f'public_flat_rw -module "{module}" -var "{name}"' for module, name in signals]
    return "\n".join(lines) + "\n"


def _run(command, cwd, log_path, env):
    with open(log_path, "a") as log:
        log.write("$ " + " ".join(map(str, command)) + "\n")
        log.flush()
        result = subprocess.run(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = "\n".join(Path(log_path).read_text().splitlines()[-30:])
        raise BuildError(f"{command[0]} failed with status {result.returncode}; "
                         f"log {log_path}:\n{tail}")


def _check_fst_support():
    """FST tracing compiles against lz4; say so up front instead of failing in make."""
    probe = subprocess.run(["c++", "-E", "-x", "c++", "-"], input="#include <lz4.h>\n",
                           capture_output=True, text=True)
    if probe.returncode != 0:
        raise BuildError("FST waveforms need the lz4 C headers, which this machine lacks "
                         "(Debian: liblz4-dev); write a .vcd waveform instead")


def _compile(config, directory, waves):
    accelerator = config.accelerator()
    (directory / "design.v").write_text(generate_verilog(accelerator))
    (directory / "public.vlt").write_text(_control_file(public_signals(accelerator)))
    libs = toolchain.cocotb_libs_dir()
    command = [
        "verilator", "-cc", "--exe", "--vpi", "--prefix", "Vtop",
        "--top-module", TOP_NAME, "-o", TOP_NAME, "-Mdir", str(directory),
        *VERILATOR_FLAGS,
        "-LDFLAGS", f"-Wl,-rpath,{libs} -L{libs} -lcocotbvpi_verilator",
        *TRACE_FLAGS.get(waves, []),
        "public.vlt", str(toolchain.cocotb_verilator_main()), "design.v",
    ]
    env = toolchain.verilator_environment()
    log_path = directory / "build.log"
    _run(command, directory, log_path, env)
    _run(["make", f"-j{os.cpu_count() or 1}", "-f", "Vtop.mk"], directory, log_path, env)


def build_design(config: DesignConfig, *, waves: str | None = None) -> Build:
    """Return the compiled model of ``config``, building it unless the cache has it.

    ``waves`` (``"fst"`` or ``"vcd"``) builds a model that can trace; tracing costs
    speed, so the default model cannot.
    """
    if waves is not None and waves not in TRACE_FLAGS:
        raise ValueError(f"waves must be one of {sorted(TRACE_FLAGS)} or None, not {waves!r}")
    if waves == "fst":
        _check_fst_support()
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    name = f"{TOP_NAME}-{config.label}{'-' + waves if waves else ''}-{_build_key(config, waves)}"
    directory = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (directory / _READY).exists():
            logger.info("building %s with Verilator (once per configuration)", config.label)
            for stale in root.glob(f"{name}.staging-*"):  # a failed or killed build
                shutil.rmtree(stale, ignore_errors=True)
            staging = root / f"{name}.staging-{os.getpid()}"
            staging.mkdir()
            started = time.perf_counter()
            _compile(config, staging, waves)
            seconds = time.perf_counter() - started
            (staging / _READY).write_text(json.dumps({"seconds": seconds}))
            shutil.rmtree(directory, ignore_errors=True)
            staging.rename(directory)
            logger.info("built %s in %.1f s", config.label, seconds)
    seconds = json.loads((directory / _READY).read_text())["seconds"]
    return Build(config=config, directory=directory, waves=waves, seconds=seconds)
