"""Generate, Verilate and compile one accelerator configuration, cached by content.

A build directory is keyed by a hash of the design parameters, the generator's and this
build step's source, the tool versions, the flags and the cocotb library it links (by its
path), so a test suite builds each configuration once, a second ``make sim`` does not
rebuild, and neither a changed generator nor another checkout's environment sharing the
cache reuses a model that is not its own. Concurrent builders of the same key (campaign
workers, pytest processes) wait on a file lock; a build is assembled in a temporary
directory and renamed into place only when it is complete, its ready marker
(``BUILD_OK``, listing the size of every file of the build) written last. A build is used
only if every file it lists is there at its size, and built again otherwise; a whole
build is used without the lock, so a read-only cache serves the builds it holds.

What a build contains:

* ``design.v``: the accelerator, exactly as ``softerror generate`` writes it;
* ``harness.v``: the simulation top (:mod:`sim.harness`) around it;
* ``sites.json``: the fault sites (:mod:`hw.netlist.fault_sites`);
* ``public.vlt``: a Verilator control file that makes only the harness ports, the fault
  sites and the operand buffers (for :mod:`sim.memory_backdoor`) visible to cocotb
  (cocotb's runner passes ``--public-flat-rw``, which makes every signal visible and the
  model several times slower);
* the model, with our own C++ ``main`` (``harness_main.cpp``: the clock runs in C++, and
  it exports the memory backdoor) and
  the C++ compiled with ``-O2`` (Verilator's default ``-Os`` runs the model at half speed).
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

from amaranth.back import verilog

import hw
from hw.accelerator import OPERAND_BUFFERS, GemmAccelerator
from hw.config import AcceleratorConfig
from hw.netlist.fault_sites import FaultSite, enumerate_fault_sites
from hw.netlist.generate import TOP_NAME, generate_verilog
from sim import toolchain
from sim.memory_backdoor import BACKDOOR_SYMBOL
from sim.harness import CLOCK_PERIOD_NS, HARNESS_NAME, ExperimentHarness

__all__ = ["Build", "BuildError", "build_design", "cache_root",
           "BUILD_FILES", "TRACE_FLAGS"]

logger = logging.getLogger("softerror.build")

#: Time unit of the simulation (``--timescale``), in picoseconds.
TIME_UNIT_PS = 1
VERILATOR_FLAGS = [
    "-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert",
    "-Wno-fatal", "-Wno-lint", "-Wno-style", "--timescale", "1ns/1ps",
]
CXX_FLAGS = ["-std=c++20", f"-DCLOCK_HALF_PERIOD={CLOCK_PERIOD_NS * 1000 // TIME_UNIT_PS // 2}"]
MAKE_OPTIMIZATION = "-O2"
#: Waveform formats a build can trace, and the Verilator flags for each.
TRACE_FLAGS = {"fst": ["--trace-fst", "--trace-structs"], "vcd": ["--trace", "--trace-structs"]}
_HARNESS_MAIN = Path(__file__).with_name("harness_main.cpp")
_READY = "BUILD_OK"
#: Files a finished build holds besides its ready marker: the sources and the model.
BUILD_FILES = ("design.v", "harness.v", "sites.json", "public.vlt", HARNESS_NAME)
#: The folder that holds the ``hw`` and ``sim`` packages.
_PACKAGES_ROOT = Path(hw.__file__).parent.parent


class BuildError(RuntimeError):
    """Verilator or the C++ compiler failed; the message ends with the tail of its log."""


@dataclass(frozen=True)
class Build:
    """A compiled, cocotb-enabled Verilator model of the harness and the accelerator."""
    config: AcceleratorConfig
    directory: Path
    waves: str | None
    """Waveform format the model can write (``"fst"``, ``"vcd"``), or ``None``: no tracing."""
    seconds: float
    """Wall time the build took when it was made."""

    @property
    def binary(self) -> Path:
        return self.directory / HARNESS_NAME

    @property
    def toplevel(self) -> str:
        return HARNESS_NAME

    def fault_sites(self):
        records = json.loads((self.directory / "sites.json").read_text())
        return [FaultSite(**record) for record in records]


def cache_root() -> Path:
    """``$SOFTERROR_BUILD_DIR``, or ``~/.cache/softerror/builds``.

    Raises
    ------
    BuildError
        If ``$SOFTERROR_BUILD_DIR`` names something that is not a directory.
    """
    configured = os.environ.get("SOFTERROR_BUILD_DIR")
    if configured:
        root = Path(configured).expanduser().resolve()
        if root.exists() and not root.is_dir():
            raise BuildError(f"SOFTERROR_BUILD_DIR {configured!r} is not a directory")
        return root
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "softerror" / "builds"


def generator_sources():
    """Every file a build depends on: the generator (every ``hw`` module, sub-packages
    included), the harness, its C++ main, the toolchain set-up and this build step."""
    sources = sorted(Path(hw.__file__).parent.rglob("*.py"))
    sources += [Path(__file__), Path(toolchain.__file__), _HARNESS_MAIN,
                Path(__file__).with_name("harness.py")]
    return sources


def _source_digest():
    """Hash of :func:`generator_sources`, each with its path (a moved module counts)."""
    digest = hashlib.sha256()
    for path in generator_sources():
        digest.update(path.relative_to(_PACKAGES_ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _build_key(config, waves):
    description = {
        "design": config.fields,
        "waves": waves,
        "flags": [VERILATOR_FLAGS, CXX_FLAGS, MAKE_OPTIMIZATION],
        "versions": toolchain.versions(),
        # The model loads cocotb's VPI library from this directory (its run path): a build
        # made by another checkout's virtual environment is not this one's.
        "cocotb_libs": str(toolchain.cocotb_libs_dir()),
        "sources": _source_digest(),
    }
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:16]


def public_signals(harness, sites):
    """(module, signal) pairs cocotb may reach: the harness ports, the fault sites and the
    operand buffers."""
    ports = ["clk", "rst", *harness.signature.members.keys()]
    return ([(HARNESS_NAME, port) for port in ports]
            + [(site.module, site.name) for site in sites]
            + [(TOP_NAME, memory) for memory in OPERAND_BUFFERS.values()])


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


def write_sources(config, directory):
    """Write ``design.v``, ``harness.v``, ``sites.json`` and ``public.vlt``."""
    accelerator = GemmAccelerator(config)
    harness = ExperimentHarness(config.register_map)
    sites = enumerate_fault_sites(accelerator)
    (directory / "design.v").write_text(generate_verilog(accelerator))
    (directory / "harness.v").write_text(verilog.convert(harness, name=HARNESS_NAME))
    (directory / "sites.json").write_text(json.dumps([asdict(site) for site in sites]))
    (directory / "public.vlt").write_text(_control_file(public_signals(harness, sites)))


def _compile(config, directory, waves):
    write_sources(config, directory)
    libs = toolchain.cocotb_libs_dir()
    command = [
        "verilator", "-cc", "--exe", "--vpi", "--prefix", "Vtop",
        "--top-module", HARNESS_NAME, "-o", HARNESS_NAME, "-Mdir", str(directory),
        *VERILATOR_FLAGS, "-CFLAGS", " ".join(CXX_FLAGS),
        "-LDFLAGS", f"-Wl,-rpath,{libs} -L{libs} -lcocotbvpi_verilator "
                    f"-Wl,--export-dynamic-symbol={BACKDOOR_SYMBOL}",
        *TRACE_FLAGS.get(waves, []),
        "public.vlt", str(_HARNESS_MAIN), "design.v", "harness.v",
    ]
    env = toolchain.verilator_environment()
    log_path = directory / "build.log"
    _run(command, directory, log_path, env)
    _run(["make", f"-j{os.cpu_count() or 1}", "-f", "Vtop.mk",
          f"OPT_FAST={MAKE_OPTIMIZATION}", f"OPT_GLOBAL={MAKE_OPTIMIZATION}"],
         directory, log_path, env)


def _file_sizes(directory):
    """Size of each of :data:`BUILD_FILES` in ``directory`` (``OSError`` if one is missing)."""
    return {name: (directory / name).stat().st_size for name in BUILD_FILES}


def _whole_build(config, directory, waves):
    """The build in ``directory`` if its ready marker is there and every file it lists has
    the size it lists; ``None`` otherwise (never built, half deleted, or emptied)."""
    try:
        marker = json.loads((directory / _READY).read_text())
        if marker["files"] != _file_sizes(directory):
            return None
        return Build(config=config, directory=directory, waves=waves,
                     seconds=marker["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _assemble(config, root, name, waves):
    """Build ``name`` in a staging directory, write its ready marker last, move it in place."""
    for stale in root.glob(f"{name}.staging-*"):  # a failed or killed build
        shutil.rmtree(stale, ignore_errors=True)
    staging = root / f"{name}.staging-{os.getpid()}"
    staging.mkdir()
    started = time.perf_counter()
    _compile(config, staging, waves)
    seconds = time.perf_counter() - started
    try:
        files = _file_sizes(staging)
    except FileNotFoundError as error:
        raise BuildError(f"the build of {config.label} made no {Path(error.filename).name}; "
                         f"see {staging / 'build.log'}") from None
    (staging / _READY).write_text(json.dumps({"seconds": seconds, "files": files}))
    directory = root / name
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)
    logger.info("built %s in %.1f s", config.label, seconds)
    return Build(config=config, directory=directory, waves=waves, seconds=seconds)


def build_design(config: AcceleratorConfig, *, waves: str | None = None) -> Build:
    """Return the compiled model of ``config``, building it unless the cache has it whole.

    ``waves`` (``"fst"`` or ``"vcd"``) builds a model that can trace; tracing costs
    speed, so the default model cannot.

    Raises
    ------
    BuildError
        If Verilator or the compiler fails, or the cache lacks the build and cannot be
        written.
    """
    if waves is not None and waves not in TRACE_FLAGS:
        raise ValueError(f"waves must be one of {sorted(TRACE_FLAGS)} or None, not {waves!r}")
    name = f"{HARNESS_NAME}-{config.label}{'-' + waves if waves else ''}-{_build_key(config, waves)}"
    build = _whole_build(config, cache_root() / name, waves)
    if build is not None:   # a build appears whole (renamed into place): no lock needed
        return build
    if waves == "fst":
        _check_fst_support()
    root = cache_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = open(root / f"{name}.lock", "w")
    except OSError as error:
        raise BuildError(f"cannot build {config.label} in the build cache {root}: "
                         f"{error.strerror}; set SOFTERROR_BUILD_DIR to a writable "
                         "directory") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        build = _whole_build(config, root / name, waves)
        if build is None:
            if (root / name).exists():
                logger.info("the cached build %s is incomplete; building it again", name)
            logger.info("building %s with Verilator (once per configuration)", config.label)
            build = _assemble(config, root, name, waves)
    return build
