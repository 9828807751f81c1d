"""The build cache: one build per configuration, reused, keyed by parameters."""

import json
import shutil

import pytest

from hw.config import AcceleratorConfig
from sim import build as build_module
from sim.build import BUILD_FILES, BuildError, build_design
from tests.read_only import read_only
from tests.test_cli import softerror


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
def test_only_harness_ports_fault_sites_and_operand_buffers_are_public(protection):
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
        + [f'public_flat_rw -module "{site.module}" -var "{site.name}"' for site in sites]
        + [f'public_flat_rw -module "gemm_accelerator" -var "{memory}"'
           for memory in ("a_buffer", "b_buffer")])
    assert "--public-flat-rw" not in (build.directory / "build.log").read_text()


def test_bad_waves_format_is_named():
    with pytest.raises(ValueError, match=r"^waves must be one of \['fst', 'vcd'\] or None, "
                                         r"not 'ghw'$"):
        build_design(AcceleratorConfig(1, 1, 4), waves="ghw")


def test_bad_design_parameters_are_named():
    with pytest.raises(TypeError, match="^Array rows must be an integer from 1 to 64, not 0$"):
        AcceleratorConfig(rows=0)


def test_every_generator_source_is_hashed_sub_packages_included(tmp_path, monkeypatch):
    """A copy of the sources stands in for the real ones, so that one can be edited."""
    sources = {path.relative_to(build_module._PACKAGES_ROOT).as_posix()
               for path in build_module.generator_sources()}
    assert {"hw/gemm/processing_element.py", "hw/protect/checksum_unit.py",
            "hw/netlist/fault_sites.py", "sim/harness_main.cpp"} <= sources
    for package in ("hw", "sim"):
        shutil.copytree(build_module._PACKAGES_ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(build_module, "_PACKAGES_ROOT", tmp_path)
    monkeypatch.setattr(build_module.hw, "__file__", str(tmp_path / "hw" / "__init__.py"))
    monkeypatch.setattr(build_module, "__file__", str(tmp_path / "sim" / "build.py"))
    monkeypatch.setattr(build_module.toolchain, "__file__", str(tmp_path / "sim" / "toolchain.py"))
    monkeypatch.setattr(build_module, "_HARNESS_MAIN", tmp_path / "sim" / "harness_main.cpp")
    config = AcceleratorConfig(2, 2, 4)
    before = build_module._build_key(config, None)
    pe = tmp_path / "hw" / "gemm" / "processing_element.py"
    pe.write_text(pe.read_text() + "\n# an edit\n")
    assert build_module._build_key(config, None) != before


def test_a_build_of_another_environment_is_not_reused(monkeypatch, tmp_path):
    """The model's run path names the cocotb library of the environment that built it; a
    checkout whose environment differs (a CI clone sharing the cache) builds its own."""
    config = AcceleratorConfig(2, 2, 4)
    before = build_module._build_key(config, None)
    monkeypatch.setattr(build_module.toolchain, "cocotb_libs_dir",
                        lambda: tmp_path / "other" / ".venv" / "cocotb" / "libs")
    assert build_module._build_key(config, None) != before


@pytest.fixture
def compile_runs(tmp_path, monkeypatch):
    """A build cache in ``tmp_path`` whose compiler writes placeholder files; the list of
    directories it compiled in."""
    monkeypatch.setenv("SOFTERROR_BUILD_DIR", str(tmp_path / "builds"))
    runs = []

    def compile_placeholders(config, directory, waves):
        runs.append(directory)
        for name in BUILD_FILES:
            (directory / name).write_text(f"{name} of {config.label}")
    monkeypatch.setattr(build_module, "_compile", compile_placeholders)
    return runs


@pytest.mark.parametrize("damage", ["delete", "empty"])
@pytest.mark.parametrize("name", [*BUILD_FILES, "BUILD_OK"])
def test_a_cached_build_missing_a_file_is_built_again(compile_runs, name, damage):
    config = AcceleratorConfig(2, 2, 4)
    first = build_design(config)
    assert build_design(config) == first and len(compile_runs) == 1
    if damage == "delete":
        (first.directory / name).unlink()
    else:
        (first.directory / name).write_text("")
    again = build_design(config)
    assert len(compile_runs) == 2
    assert again.directory == first.directory
    assert (again.directory / name).read_text() != ""
    assert build_design(config) == again and len(compile_runs) == 2


def test_a_build_that_makes_no_model_fails_and_is_not_kept(compile_runs, tmp_path,
                                                           monkeypatch):
    def compile_without_model(config, directory, waves):
        (directory / "design.v").write_text("module gemm_accelerator(); endmodule\n")
    monkeypatch.setattr(build_module, "_compile", compile_without_model)
    with pytest.raises(BuildError, match=r"^the build of 2x2-k4 made no harness\.v; see "):
        build_design(AcceleratorConfig(2, 2, 4))
    kept = [path.name for path in (tmp_path / "builds").iterdir()
            if not path.name.endswith(".lock") and ".staging-" not in path.name]
    assert kept == []


def test_a_read_only_cache_serves_its_whole_builds(tmp_path):
    config = AcceleratorConfig(rows=1, cols=1, k_max=4)
    build = build_design(config)          # in the shared cache
    cache = tmp_path / "builds"
    shutil.copytree(build.directory, cache / build.directory.name)
    verify = ["verify", "gemm", "--rows", "1", "--cols", "1", "--k-max", "4", "--m", "2",
              "--k", "3", "--n", "1"]
    with read_only(cache) as (prefix, reason):
        result = softerror(*verify, env={"SOFTERROR_BUILD_DIR": str(cache)}, prefix=prefix)
        assert result.returncode == 0, result.stderr
        assert "bit-exact" in result.stdout
        # A build it does not hold is one line saying where to build instead.
        result = softerror(*verify, "--abft", "col",
                           env={"SOFTERROR_BUILD_DIR": str(cache)}, prefix=prefix)
        assert (result.returncode, result.stderr.splitlines()[-1]) == (
            1, f"softerror: cannot build 1x1-k4-col in the build cache {cache}: {reason}; "
               "set SOFTERROR_BUILD_DIR to a writable directory")
        assert "Traceback" not in result.stderr
    assert sorted(path.name for path in cache.iterdir()) == [build.directory.name]


def test_area_answers_from_a_read_only_cache_without_keeping_the_report(tmp_path):
    cache = tmp_path / "builds"
    cache.mkdir()
    with read_only(cache) as (prefix, reason):
        result = softerror("area", "--rows", "1", "--cols", "1", "--k-max", "4", "--json",
                           env={"SOFTERROR_BUILD_DIR": str(cache)}, prefix=prefix)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["cells"] > 0
    assert f"area report not cached: {cache / 'area'}: {reason}" in result.stderr
    assert list(cache.iterdir()) == []


@pytest.mark.parametrize("command", [
    ["verify", "gemm", "--rows", "1", "--cols", "1", "--k-max", "4", "--m", "1", "--k", "1",
     "--n", "1"],
    ["area", "--rows", "1", "--cols", "1", "--k-max", "4"],
])
def test_a_build_dir_that_is_a_file_is_named(tmp_path, command):
    not_a_directory = tmp_path / "builds"
    not_a_directory.write_text("not a cache\n")
    result = softerror(*command, env={"SOFTERROR_BUILD_DIR": str(not_a_directory)})
    assert (result.returncode, result.stderr) == (
        1, f"softerror: SOFTERROR_BUILD_DIR '{not_a_directory}' is not a directory\n")
