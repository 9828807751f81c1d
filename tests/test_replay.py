"""``softerror replay``: a stored experiment run again on the RTL, beside its record."""

import json
import sqlite3
import subprocess
import sys
from dataclasses import replace

import pytest

from hw.config import AcceleratorConfig
from sim.campaign.engine import CampaignOptions, run_campaign
from sim.campaign.workload import Workload

SMALL = CampaignOptions(AcceleratorConfig(rows=2, cols=2, k_max=8), Workload(2, 8, 2, seed=1),
                        seed=1, injections=200)


def softerror(*args):
    return subprocess.run([sys.executable, "-m", "sim.cli.main", *args], capture_output=True,
                          text=True)


@pytest.fixture(scope="module")
def campaign_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("replay") / "small.db"
    run_campaign(SMALL, path)
    return path


def first_experiment(db_path, outcome):
    with sqlite3.connect(db_path) as db:
        return db.execute("SELECT MIN(experiment) FROM experiments WHERE outcome = ?",
                          (outcome,)).fetchone()[0]


@pytest.mark.parametrize("outcome", ["sdc", "masked", "hang"])
def test_replay_does_what_the_campaign_stored(campaign_db, outcome):
    number = first_experiment(campaign_db, outcome)
    assert number is not None
    result = softerror("replay", "--db", str(campaign_db), "--experiment", str(number), "--json")
    assert result.returncode == 0, result.stderr
    replayed = json.loads(result.stdout)
    assert replayed["agrees"] is True and replayed["design_changed"] is False
    assert replayed["replayed"] == replayed["stored"]
    assert replayed["stored"]["outcome"] == outcome
    with sqlite3.connect(campaign_db) as db:
        site, bit, tile, cycle, wrong = db.execute(
            "SELECT s.path, e.bit, e.tile, e.cycle, e.wrong_elements FROM experiments e JOIN "
            "sites s ON s.campaign_id = e.campaign_id AND s.site = e.site "
            "WHERE e.experiment = ?", (number,)).fetchone()
    assert (replayed["site"], replayed["bit"], replayed["tile"], replayed["cycle"]) == \
        (site, bit, tile, cycle)
    assert replayed["stored"]["wrong_elements"] == wrong
    if outcome == "sdc":
        tile = replayed["stored"]["faulty_tile"]
        assert len(tile) == 2 and len(tile[0]) == 2


def test_replay_says_when_the_rtl_does_something_else(tmp_path, campaign_db):
    path = tmp_path / "changed.db"
    path.write_bytes(campaign_db.read_bytes())
    number = first_experiment(path, "sdc")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE experiments SET max_abs_error = max_abs_error + 1 "
                   "WHERE experiment = ?", (number,))
    db.close()
    result = softerror("replay", "--db", str(path), "--experiment", str(number))
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"Campaign 1, experiment {number}: bit ")
    assert [line.split()[:2] for line in lines[3:5]] == [["stored", "sdc"], ["replayed", "sdc"]]
    assert lines[-1] == "The RTL did not do what the campaign stored."


def test_replay_writes_the_waveform(tmp_path, campaign_db):
    waves = tmp_path / "sdc.vcd"
    number = first_experiment(campaign_db, "sdc")
    result = softerror("replay", "--db", str(campaign_db), "--experiment", str(number),
                       "--waves", str(waves))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-2:] == [
        "The RTL did what the campaign stored.",
        f"waveform: {waves} (reset, the tile's golden run, then the experiment: the last "
        "toggle of run)"]
    vcd = waves.read_text()
    assert "$enddefinitions" in vcd
    for signal in ("accumulator", "run", "tile_state"):
        assert f" {signal} " in vcd


@pytest.mark.parametrize("args, message", [
    (["--experiment", "200"],
     "--experiment: campaign 1 has no experiment 200 (its 200 are numbered from 0 to 199)"),
    (["--experiment", "0", "--campaign", "3"], "--campaign must be one of [1] in {db}, not 3"),
    (["--experiment", "0", "--waves", "x.txt"], "--waves must name a .fst or .vcd file, not "
                                                "'x.txt'"),
    (["--experiment", "0", "--waves", "/nonexistent-dir/x.vcd"],
     "--waves '/nonexistent-dir/x.vcd': cannot write: No such file or directory"),
])
def test_bad_replay_options(campaign_db, args, message):
    result = softerror("replay", "--db", str(campaign_db), *args)
    assert (result.returncode, result.stderr) == (
        2, f"softerror: error: {message.format(db=campaign_db)}\n")


def test_replay_needs_a_campaign_when_the_database_holds_several(tmp_path, campaign_db):
    path = tmp_path / "two.db"
    path.write_bytes(campaign_db.read_bytes())
    run_campaign(replace(SMALL, seed=2, injections=10), path)
    result = softerror("replay", "--db", str(path), "--experiment", "0")
    assert (result.returncode, result.stderr) == (
        2, f"softerror: error: --db: {str(path)!r} holds campaigns [1, 2]: choose one with "
           "--campaign\n")
    result = softerror("replay", "--db", str(path), "--experiment", "3", "--campaign", "2",
                       "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["campaign_id"] == 2
