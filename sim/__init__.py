"""Verilator builds, cocotb testbenches, fault-injection campaigns and the CLI."""
