"""Nonlinear units beside the array: configuration, addresses, fault sites, co-verification
over the host port on Verilator."""

import json
import subprocess
import sys

import pytest

from hw.accelerator import GemmAccelerator
from hw.config import AcceleratorConfig
from hw.netlist.fault_sites import enumerate_fault_sites, sites_per_class
from hw.register_map import NONLINEAR_REGION_BASE, UnitCsr, UnitWindow


def test_designs_without_units_keep_their_parameters_and_addresses():
    config = AcceleratorConfig(rows=4, cols=4, k_max=16)
    assert config.fields == {"rows": 4, "cols": 4, "k_max": 16, "abft": "none",
                             "range_check": False}
    assert config.register_map.addr_width == config.register_map.index_width + 2
    assert AcceleratorConfig(**config.fields) == config


def test_units_are_put_in_order_and_checked():
    config = AcceleratorConfig(nonlinear=["layernorm", "softmax"], nonlinear_length=100)
    assert config.nonlinear == ("softmax", "layernorm")
    assert config.label == "8x8-k256-softmax-layernorm-len100"
    assert AcceleratorConfig(**json.loads(json.dumps(config.fields))) == config
    assert AcceleratorConfig(nonlinear=("gelu",), nonlinear_checkers=False).label == (
        "8x8-k256-gelu-len256-unchecked")
    with pytest.raises(TypeError, match="nonlinear must be distinct units"):
        AcceleratorConfig(nonlinear=("softmax", "softmax"))
    with pytest.raises(TypeError, match="nonlinear_length must be an integer from 1 to 511"):
        AcceleratorConfig(nonlinear=("softmax",), nonlinear_length=512)


def test_each_unit_has_its_region_and_windows():
    regs = AcceleratorConfig(k_max=16, nonlinear=("softmax", "gelu"),
                             nonlinear_length=40).register_map
    assert regs.unit_window == 64
    assert regs.addr_width == regs.index_width + 3
    assert regs.unit_address("gelu", UnitWindow.CSR, UnitCsr.N) == (
        (NONLINEAR_REGION_BASE + 1) << regs.index_width) | (64 + UnitCsr.N)
    with pytest.raises(ValueError, match="no layernorm unit"):
        regs.unit_address("layernorm", UnitWindow.ROW, 0)


def test_a_units_registers_are_sites_of_its_own_class():
    config = AcceleratorConfig(rows=2, cols=2, k_max=8, nonlinear=("softmax",),
                               nonlinear_length=8)
    sites = enumerate_fault_sites(GemmAccelerator(config))
    softmax = {site.path for site in sites if site.fault_class == "softmax"}
    assert {"softmax.maximum", "softmax.sum", "softmax.reciprocal"} <= softmax
    assert all(path.startswith("softmax.") for path in softmax)
    assert any(path.startswith("softmax.checker.") for path in softmax)
    # The unit's CSRs belong to the host port: configuration, class control.
    assert {site.fault_class for site in sites if site.path.startswith("softmax_")} == {
        "control"}
    plain = enumerate_fault_sites(GemmAccelerator(AcceleratorConfig(rows=2, cols=2, k_max=8)))
    assert sites_per_class(plain)["softmax"] == 0
    # Beside the units, the design is the same (the read register keeps its own name,
    # rdata_reg, once the units' codes are multiplexed behind it).
    renamed = {"rdata": "rdata_reg"}
    assert {renamed.get(site.path, site.path) for site in plain} < {site.path for site in sites}


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "sim.cli", *args], capture_output=True,
                          text=True, check=False)


@pytest.mark.parametrize("unit", ["softmax", "gelu", "layernorm"])
def test_verify_nonlinear_is_bit_exact_over_the_host_port(unit):
    result = run_cli("verify", "nonlinear", "--unit", unit, "--length", "8", "--rows", "40",
                     "--seed", "3", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["bit_exact"] and report["counters_ok"] and report["mismatches"] == 0
    assert (report["unit"], report["rows"], report["length"]) == (unit, 40, 8)
    assert report["cycles"] > 0 and "flags" in report


def test_verify_nonlinear_refuses_a_row_too_long_for_the_unit():
    result = run_cli("verify", "nonlinear", "--unit", "softmax", "--length", "600")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "softerror: error: --length must be at most 511 for the softmax unit, not 600")
