"""The build cache: one build per configuration, reused, keyed by parameters."""

import pytest

from hw.config import AcceleratorConfig
from sim import build as build_module
from sim.build import build_design


def test_second_build_is_a_cache_hit():
    config = AcceleratorConfig(rows=1, cols=1, k_max=4)
    first = build_design(config)
    stamp = (first.directory / "BUILD_OK").stat().st_mtime_ns
    second = build_design(config)
    assert second.directory == first.directory
    assert (second.directory / "BUILD_OK").stat().st_mtime_ns == stamp
    assert second.binary.exists() and second.seconds > 0


def test_key_depends_on_parameters_waves_and_sources(monkeypatch):
    key = build_module._build_key
    base = key(AcceleratorConfig(2, 2, 4), None)
    assert key(AcceleratorConfig(2, 2, 4), None) == base
    assert key(AcceleratorConfig(2, 3, 4), None) != base
    assert key(AcceleratorConfig(2, 2, 5), None) != base
    assert key(AcceleratorConfig(2, 2, 4), "vcd") != base
    monkeypatch.setattr(build_module, "_source_digest", lambda: "edited generator")
    assert key(AcceleratorConfig(2, 2, 4), None) != base


@pytest.mark.parametrize("protection", [{}, {"abft": "col", "range_check": True}])
def test_only_harness_ports_and_fault_sites_are_public(protection):
    build = build_design(AcceleratorConfig(rows=1, cols=1, k_max=4, **protection))
    control = (build.directory / "public.vlt").read_text().splitlines()
    assert control[0] == "`verilator_config"
    range_ports = ["range_lower", "range_upper", "range_control"] if protection else []
    ports = ["clk", "rst", "addr", "wdata", "we", "re", "rdata", "irq", "run", "tile_k",
             "watchdog", *range_ports, "expected", "row_mask", "lane_mask", "finished", "hang",
             "mismatch", "observed", "done_cycles", "status"]
    sites = build.fault_sites()
    classes = {site.fault_class for site in sites}
    assert {"checksum", "range"} <= classes if protection else not classes & {"checksum", "range"}
    assert control[1:] == (
        [f'public_flat_rw -module "softerror_harness" -var "{port}"' for port in ports]
        + [f'public_flat_rw -module "{site.module}" -var "{site.name}"' for site in sites])
    assert "--public-flat-rw" not in (build.directory / "build.log").read_text()


def test_bad_waves_format_is_named():
    with pytest.raises(ValueError, match=r"^waves must be one of \['fst', 'vcd'\] or None, "
                                         r"not 'ghw'$"):
        build_design(AcceleratorConfig(1, 1, 4), waves="ghw")


def test_bad_design_parameters_are_named():
    with pytest.raises(TypeError, match="^Array rows must be an integer from 1 to 64, not 0$"):
        AcceleratorConfig(rows=0)
