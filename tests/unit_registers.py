"""The registers of a nonlinear unit as the netlist names them, through the fault-site walk."""

import re

from hw.netlist.fault_sites import DEFAULT_CLASS, enumerate_fault_sites

__all__ = ["unit_registers"]

_READABLE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")


def unit_registers(unit):
    """``{path: width}`` of every register (flip-flops) of the component ``unit``.

    The nonlinear units carry no ``fault_class`` attribute (the integration classifies
    their registers by unit), so the walk gives every site its default class: asserted
    here, as is that every path is a readable name (lower-case words joined by ``_``, one
    ``.`` per submodule), not a name the tools made up.
    """
    sites = enumerate_fault_sites(unit)
    assert {site.fault_class for site in sites} <= {DEFAULT_CLASS}
    assert [site.path for site in sites if not _READABLE.fullmatch(site.path)] == []
    return {site.path: site.width for site in sites}
