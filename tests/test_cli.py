"""The ``softerror`` command line: happy paths, JSON output, and one-line errors."""

import json
import os
import subprocess
import sys

import pytest

from tests.read_only import read_only


def softerror(*args, cwd=None, env=None, prefix=()):
    """Run the CLI (after the command ``prefix``, with ``env`` added to the environment)."""
    return subprocess.run([*prefix, sys.executable, "-m", "sim.cli.main", *args],
                          capture_output=True, text=True, cwd=cwd,
                          env=None if env is None else {**os.environ, **env})


@pytest.mark.parametrize("args, message", [
    (["verify", "gemm", "--rows", "0", "--m", "1", "--k", "1", "--n", "1"],
     "argument --rows: must be an integer from 1 to 64, not 0"),
    (["verify", "gemm", "--cols", "2.5", "--m", "1", "--k", "1", "--n", "1"],
     "argument --cols: must be an integer, not '2.5'"),
    (["verify", "gemm", "--m", "-3", "--k", "1", "--n", "1"],
     "argument --m: must be an integer from 1 to 1048576, not -3"),
    (["verify", "gemm", "--m", "8", "--k", "300", "--n", "8"],
     "--k must be at most --k-max (256), not 300"),
    (["verify", "gemm", "--m", "8", "--k", "3", "--n", "8", "--waves", "out.txt"],
     "--waves must name a .fst or .vcd file, not 'out.txt'"),
    (["generate", "--k-max", "0", "-o", "x.v"],
     "argument --k-max: must be an integer from 1 to 4096, not 0"),
    (["generate", "-o", "/nonexistent-dir/x.v"],
     "-o '/nonexistent-dir/x.v': cannot write: No such file or directory"),
])
def test_bad_input_is_one_line_with_status_2(args, message):
    result = softerror(*args)
    assert result.returncode == 2
    assert result.stderr == f"softerror: error: {message}\n"
    assert "Traceback" not in result.stderr


def test_generate_writes_verilog(tmp_path):
    path = tmp_path / "acc.v"
    result = softerror("generate", "--rows", "2", "--cols", "3", "--k-max", "5", "-o", str(path))
    assert result.returncode == 0, result.stderr
    verilog = path.read_text()
    assert "module gemm_accelerator(" in verilog
    assert verilog.count(r"module \gemm_accelerator.array.pe_") == 2 * 3   # one per PE


def test_verify_gemm_json_is_one_bit_exact_object():
    result = softerror("verify", "gemm", "--rows", "3", "--cols", "5", "--k-max", "16",
                       "--m", "7", "--k", "16", "--n", "9", "--seed", "4", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["bit_exact"] is True
    assert (report["rows"], report["cols"], report["m"], report["k"], report["n"]) == \
        (3, 5, 7, 16, 9)
    assert report["tiles"] == 3 * 2
    assert report["cycles"] == 6 * (1 + 16 + 3 + 5 - 2 + 3)


def test_verify_gemm_table_and_waveform(tmp_path):
    waves = tmp_path / "run.vcd"
    result = softerror("verify", "gemm", "--rows", "1", "--cols", "1", "--k-max", "4",
                       "--m", "2", "--k", "3", "--n", "1", "--waves", str(waves))
    assert result.returncode == 0, result.stderr
    assert "bit-exact" in result.stdout
    vcd = waves.read_text()
    assert "$enddefinitions" in vcd
    for signal in ("accumulator", "a_reg", "row_0", "tile_state"):
        assert f" {signal} " in vcd


CAMPAIGN = ["campaign", "--rows", "8", "--cols", "8", "--k-max", "256", "--m", "8", "--k", "64",
            "--n", "8", "--seed", "2"]


@pytest.mark.parametrize("args, message", [
    (["--sites", "operand,bogus"],
     "argument --sites: unknown class 'bogus' (classes: operand, accumulator, control, output, "
     "checksum, range, softmax, gelu, layernorm)"),
    (["--sites", "checksum"],
     "--sites: this design has no 'checksum' sites (it has: operand, accumulator, control, "
     "output)"),
    (["--injections", "0"], "argument --injections: must be an integer from 1 to 1000000000, "
                            "not 0"),
    (["--workers", "0"], "argument --workers: must be an integer from 1 to 1024, not 0"),
    (["--exhaustive-cycle", "5000"], "--exhaustive-cycle must be from 0 to 98 (the workload's "
                                     "cycles), not 5000"),
])
def test_bad_campaign_options(tmp_path, args, message):
    result = softerror(*CAMPAIGN, "--db", str(tmp_path / "c.db"), *args)
    # Progress lines of a first build may precede the error; the error ends the run.
    assert (result.returncode, result.stderr.splitlines()[-1]) == (2, f"softerror: error: {message}")


@pytest.mark.parametrize("args, message", [
    (["--scheduler", "foo://bar"], "--scheduler must be a Dask scheduler address such as "
                                   "tcp://HOST:PORT, not 'foo://bar'"),
    (["--scheduler", "tcp://:8786"], "--scheduler must be a Dask scheduler address such as "
                                     "tcp://HOST:PORT, not 'tcp://:8786'"),
    (["--workers", "1", "--scheduler", "tcp://127.0.0.1:8786"],
     "--workers and --scheduler exclude each other: the Dask cluster's own workers run a "
     "campaign given a scheduler"),
    (["--scheduler-timeout", "0"],
     "argument --scheduler-timeout: must be a positive number of seconds, not '0'"),
])
def test_bad_executor_options_are_refused_before_any_work(tmp_path, args, message):
    result = softerror(*CAMPAIGN, "--db", str(tmp_path / "c.db"), *args)
    assert (result.returncode, result.stderr) == (2, f"softerror: error: {message}\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--range-lower", "-5"], "--range-lower, --range-upper and --range-mode need --range-check"),
    (["--range-check", "--range-lower", "5", "--range-upper", "4"],
     "--range-lower (5) must not exceed --range-upper (4)"),
    (["--range-check", "--range-upper", "4294967296"],
     "argument --range-upper: must be an integer from -2147483648 to 2147483647, not 4294967296"),
])
def test_bad_range_options(tmp_path, args, message):
    result = softerror(*CAMPAIGN, "--db", str(tmp_path / "c.db"), *args)
    assert (result.returncode, result.stderr.splitlines()[-1]) == (2, f"softerror: error: {message}")


def test_bad_abft_mode_is_named():
    result = softerror("verify", "gemm", "--abft", "row", "--m", "1", "--k", "1", "--n", "1")
    assert result.returncode == 2
    assert result.stderr == ("softerror: error: argument --abft: invalid choice: 'row' "
                             "(choose from 'none', 'col', 'rowcol')\n")


def test_unwritable_database_is_a_clear_error(tmp_path):
    result = softerror(*CAMPAIGN, "--db", "/nonexistent-dir/c.db")
    assert result.returncode == 2
    assert result.stderr == ("softerror: error: --db: cannot create '/nonexistent-dir/c.db': "
                             "no directory '/nonexistent-dir'\n")
    result = softerror(*CAMPAIGN, "--db", str(tmp_path))
    assert (result.returncode, result.stderr) == (
        2, f"softerror: error: --db: '{tmp_path}' is a directory, not a database file\n")
    not_a_database = tmp_path / "notes.txt"
    not_a_database.write_text("these are notes, not a campaign database\n" * 100)
    result = softerror(*CAMPAIGN, "--db", str(not_a_database))
    assert (result.returncode, result.stderr) == (
        2, f"softerror: error: --db: cannot use database '{not_a_database}': file is not a "
           "database\n")


def test_campaign_json_then_report_and_csv(tmp_path):
    db = tmp_path / "c.db"
    result = softerror(*CAMPAIGN, "--db", str(db), "--injections", "300", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["injections"] == 300
    assert set(summary["outcomes"]) == {"masked", "corrected", "detected", "sdc", "false_alarm",
                                        "hang"}
    assert summary["per_class"]["accumulator"]["sdc"] > 0
    assert summary["injections_per_second"] > 0
    report = softerror("report", "--db", str(db), "--json", "--csv", str(tmp_path / "c.csv"))
    assert report.returncode == 0, report.stderr
    again = json.loads(report.stdout)
    assert again["per_class"] == summary["per_class"]
    lines = (tmp_path / "c.csv").read_text().splitlines()
    assert lines[0].startswith("experiment,site,class,bit,tile,cycle,outcome")
    assert len(lines) == 301
    text = softerror("report", "--db", str(db))
    assert "Wilson" in text.stdout and "Leveugle" in text.stdout
    assert softerror("report", "--db", str(db), "--campaign", "7").stderr == \
        "softerror: error: --campaign must be one of [1] in " + str(db) + ", not 7\n"


def test_sites_json_counts_bits_per_class():
    result = softerror("sites", "--rows", "2", "--cols", "3", "--k-max", "4", "--json")
    listing = json.loads(result.stdout)
    assert listing["bits_per_class"]["accumulator"] == 6 * 32
    assert listing["bits"] == sum(site["width"] for site in listing["sites"])
    assert {site["fault_class"] for site in listing["sites"]} == {"operand", "accumulator",
                                                                   "control", "output"}


def test_area_reports_the_overhead_of_a_protection():
    result = softerror("area", "--rows", "2", "--cols", "2", "--k-max", "16", "--abft", "col",
                       "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["cells"] > report["cells_base"] > 0
    assert report["overhead_pct"] == pytest.approx(
        100 * (report["cells"] - report["cells_base"]) / report["cells_base"])
    assert report["flip_flops"] > report["flip_flops_base"]
    assert report["extra_cycles_per_tile"] == 0


TINY = ["--rows", "1", "--cols", "1", "--k-max", "4"]


@pytest.mark.parametrize("args, message", [
    (["verify", "gemm", *TINY, "--m", "1", "--k", "1", "--n", "1", "--waves",
      "/nonexistent-dir/w.vcd"],
     "--waves '/nonexistent-dir/w.vcd': cannot write: No such file or directory"),
    (["verify", "gemm", *TINY, "--m", "1048576", "--k", "1", "--n", "1048576"],
     "--m 1048576 --k 1 --n 1048576: a 1048576x1x1048576 GEMM needs about 32.0 TiB of memory "
     "for its operands and results, more than the 8.0 GiB a GEMM may take"),
    (["campaign", *TINY, "--m", "1048576", "--k", "1", "--n", "1048576", "--db",
      "/nonexistent-dir/c.db"],
     "--m 1048576 --k 1 --n 1048576: a 1048576x1x1048576 GEMM needs about 32.0 TiB of memory "
     "for its operands and results, more than the 8.0 GiB a GEMM may take"),
])
def test_outputs_and_sizes_are_checked_before_any_work(args, message):
    result = softerror(*args)
    assert (result.returncode, result.stderr) == (2, f"softerror: error: {message}\n")


def test_output_paths_that_are_folders_or_files_are_named(tmp_path):
    folder = tmp_path / "w.vcd"
    folder.mkdir()
    result = softerror("verify", "gemm", *TINY, "--m", "1", "--k", "1", "--n", "1",
                       "--waves", str(folder))
    assert (result.returncode, result.stderr) == (
        2, f"softerror: error: --waves '{folder}': cannot write: Is a directory\n")
    result = softerror("generate", *TINY, "-o", str(tmp_path))
    assert (result.returncode, result.stderr) == (
        2, f"softerror: error: -o '{tmp_path}': cannot write: Is a directory\n")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("notes\n")
    for out in (a_file, a_file / "runs"):
        result = softerror("sim", *TINY, "--out", str(out))
        assert (result.returncode, result.stderr) == (
            2, f"softerror: error: --out '{out}': cannot write: Not a directory\n")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt", "w.vcd"]


def test_read_only_outputs_are_refused_before_any_work(tmp_path):
    with read_only(tmp_path) as (prefix, reason):
        waves = tmp_path / "w.vcd"
        result = softerror("verify", "gemm", *TINY, "--m", "1", "--k", "1", "--n", "1",
                           "--waves", str(waves), prefix=prefix)
        assert (result.returncode, result.stderr) == (
            2, f"softerror: error: --waves '{waves}': cannot write: {reason}\n")
        for out in (tmp_path, tmp_path / "runs"):
            result = softerror("sim", *TINY, "--out", str(out), prefix=prefix)
            assert (result.returncode, result.stderr) == (
                2, f"softerror: error: --out '{out}': cannot write: {reason}\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--range-lower", "3"], "--range-lower, --range-upper and --range-mode need --range-check"),
    (["--range-check", "--range-lower", "3", "--range-upper", "2"],
     "--range-lower (3) must not exceed --range-upper (2)"),
])
def test_sim_checks_every_option_before_it_builds_or_writes(tmp_path, args, message):
    out = tmp_path / "runs"
    out.mkdir()
    (out / "verify.json").write_text("an earlier run\n")
    result = softerror("sim", *TINY, "--out", str(out), *args)
    assert (result.returncode, result.stderr) == (2, f"softerror: error: {message}\n")
    assert [path.name for path in out.iterdir()] == ["verify.json"]
    assert (out / "verify.json").read_text() == "an earlier run\n"
