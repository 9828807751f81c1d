"""Verilog and RTLIL output of the accelerator generator."""

from amaranth.back import rtlil, verilog

from hw.accelerator import GemmAccelerator

__all__ = ["TOP_NAME", "generate_verilog", "generate_rtlil"]

#: Module name of the generated top level.
TOP_NAME = "gemm_accelerator"


def generate_verilog(accelerator: GemmAccelerator) -> str:
    """Verilog of ``accelerator``, one module per Amaranth component instance."""
    return verilog.convert(accelerator, name=TOP_NAME)


def generate_rtlil(accelerator: GemmAccelerator) -> str:
    """RTLIL of ``accelerator``, the input of the Yosys-based analyses."""
    return rtlil.convert(accelerator, name=TOP_NAME)
