"""Area overhead of the protection units, measured by synthesis and cached.

Synthesis takes seconds for an 8x8 array and minutes for a 32x32 one, so each design's
report is kept in the build cache, keyed by a hash of its RTLIL (which changes whenever
the generator's output does).
"""

import dataclasses
import hashlib
import json
import logging
import os

from hw.accelerator import GemmAccelerator
from hw.config import AcceleratorConfig
from hw.netlist.area import synthesize
from hw.netlist.generate import TOP_NAME, generate_rtlil
from sim.build import cache_root

__all__ = ["area_report", "area_overhead", "nonlinear_area"]

logger = logging.getLogger("softerror.area")


def area_report(config: AcceleratorConfig):
    """The synthesis report of ``config`` as a dict (``cells``, ``flip_flops``, ...)."""
    return _synthesized(generate_rtlil(GemmAccelerator(config)), config.label)


def nonlinear_area(config: AcceleratorConfig):
    """Per nonlinear unit of ``config``: its cells with and without its checkers."""
    from amaranth.back import rtlil

    from hw.nonlinear.units import build_unit
    reports = []
    for unit in config.nonlinear:
        length = config.nonlinear_length
        cells = {checkers: _synthesized(
            rtlil.convert(build_unit(unit, length, checkers), name=TOP_NAME),
            f"{unit}-len{length}-{'checked' if checkers else 'bare'}")
            for checkers in (False, True)}
        reports.append({
            "unit": unit, "length": length, "cells_without_checkers": cells[False]["cells"],
            "cells": cells[True]["cells"],
            "checker_overhead_pct": 100 * (cells[True]["cells"] - cells[False]["cells"])
            / cells[False]["cells"],
            "flip_flops_without_checkers": cells[False]["flip_flops"],
            "flip_flops": cells[True]["flip_flops"]})
    return reports


def _synthesized(rtlil, label):
    digest = hashlib.sha256(rtlil.encode()).hexdigest()[:20]
    path = cache_root() / "area" / f"{label}-{digest}.json"
    if path.exists():
        return json.loads(path.read_text())
    report = dataclasses.asdict(synthesize(rtlil))
    try:   # a read-only cache still answers, it just does not keep the report
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_suffix(f".partial-{os.getpid()}")
        staging.write_text(json.dumps(report))
        staging.replace(path)
    except OSError as error:
        logger.info("area report not cached: %s: %s", path.parent, error.strerror)
    return report


def area_overhead(config: AcceleratorConfig):
    """Cells of ``config`` against the same array with no protection, and the overhead."""
    base = area_report(dataclasses.replace(config, abft="none", range_check=False))
    this = area_report(config)
    return {
        "rows": config.rows, "cols": config.cols, "k_max": config.k_max,
        "abft": config.abft, "range_check": config.range_check,
        "cells_base": base["cells"], "cells": this["cells"],
        "overhead_pct": 100 * (this["cells"] - base["cells"]) / base["cells"],
        "flip_flops_base": base["flip_flops"], "flip_flops": this["flip_flops"],
        "ram_macros": this["ram_macros"],
    }
