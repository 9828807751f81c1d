"""The nonlinear units by name, as the accelerator instantiates them beside the array."""

from functools import lru_cache

from amaranth.hdl import Fragment

from hw.config import NONLINEAR_UNITS

__all__ = ["build_unit", "unit_latency", "timing_unit"]


def build_unit(name, length, checkers=True):
    """The unit ``name`` (one of :data:`hw.config.NONLINEAR_UNITS`) for rows of up to
    ``length`` elements, with its default widths, with or without its checkers."""
    if name == "softmax":
        from hw.nonlinear.softmax import SoftmaxUnit
        return SoftmaxUnit(length=length, checkers=checkers)
    if name == "gelu":
        from hw.nonlinear.gelu import GeluUnit
        return GeluUnit(length=length, checkers=checkers)
    if name == "layernorm":
        from hw.nonlinear.layernorm import LayerNormUnit
        return LayerNormUnit(length=length, checkers=checkers)
    raise TypeError(f"nonlinear unit must be one of {', '.join(NONLINEAR_UNITS)}, "
                    f"not {name!r}")


def unit_latency(name, length, n):
    """Clock edges from the one that samples START to the one after which DONE is high,
    for a row of ``n`` on unit ``name`` of rows up to ``length``."""
    return timing_unit(name, length).latency(n)


@lru_cache(maxsize=16)
def timing_unit(name, length, checkers=True):
    """A unit built to ask its timing and register map (``latency``, ``stage_cycle``,
    ``stage_registers``), not to be instantiated in a design: elaborated once, so that it
    is not reported as unused."""
    unit = build_unit(name, length, checkers)
    Fragment.get(unit, None)
    return unit
