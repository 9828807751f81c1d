"""Amaranth generators for the GEMM accelerator and its protection units.

Import the submodules directly (``hw.accelerator``, ``hw.register_map``); this package
imports nothing itself so that the register map can be used without loading Amaranth.
"""
