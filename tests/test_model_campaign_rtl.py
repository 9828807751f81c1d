"""Model campaigns on the RTL: the predictor and the twin engine against Verilator, resume
after SIGKILL."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace

import pytest

from hw.config import AcceleratorConfig
from sim.campaign.worker import close_sessions
from sim.simulator import SimulationError
from sim.cosim.campaign import run_model_campaign
from sim.cosim.engine import ModelCampaign, ModelCampaignOptions
from sw.twin.upset import MODELED_CLASSES

# K of 64 and 128 take several passes of 16; non-square arrays catch a row taken for a
# column; the range checker gets profiled per-GEMM bounds. (The designs of
# tests/test_upset_model.py and tests/test_campaign.py: their builds are shared.)
DESIGNS = [AcceleratorConfig(rows=3, cols=5, k_max=16),
           AcceleratorConfig(rows=5, cols=2, k_max=16, abft="col"),
           AcceleratorConfig(rows=3, cols=5, k_max=16, abft="rowcol", range_check=True)]


@pytest.mark.parametrize("model", ["vit", "cnn"])
@pytest.mark.parametrize("config", DESIGNS, ids=lambda config: config.label)
def test_the_twin_engine_reproduces_the_rtl_experiment_by_experiment(model, config):
    """Same draws on both engines: every modeled upset's RTL tile is predicted bit for bit,
    so the records (outcome, top-1, margin, host action) are the same."""
    options = ModelCampaignOptions(config, model=model, images=4, seed=11, engine="rtl",
                                   classes=MODELED_CLASSES)
    try:
        rtl = ModelCampaign.prepare(options).run(range(70))
    finally:
        close_sessions()
    twin = ModelCampaign.prepare(replace(options, engine="twin")).run(range(70))
    assert [r.predicted for r in rtl] == ["equal"] * 70
    assert rtl == twin
    assert {r.fault_class for r in rtl} == set(MODELED_CLASSES)
    assert Counter(r.tile_equal for r in rtl)[False] > 0


def test_the_rtl_engine_counts_unmodeled_upsets_and_flags_range_alarms():
    options = ModelCampaignOptions(DESIGNS[2], model="vit", images=4, seed=4, engine="rtl")
    campaign = ModelCampaign.prepare(options)
    try:
        records = campaign.run(range(150))
    finally:
        close_sessions()
    predicted = Counter((r.fault_class in MODELED_CLASSES, r.predicted) for r in records)
    assert set(predicted) == {(True, "equal"), (False, "not_modeled")}
    assert campaign.bounds and campaign.widened_bounds == 0
    assert any(r.action == "recompute" for r in records)


def test_a_tile_the_twin_gets_wrong_fails_its_golden_run_on_demand(monkeypatch):
    """A pass's golden run comes only after an upset run that does not read back the twin's
    tile; a twin that is off by one in one element still stops the campaign."""
    options = ModelCampaignOptions(DESIGNS[0], model="vit", images=4, seed=3, engine="rtl",
                                   classes=("operand",))
    campaign = ModelCampaign.prepare(options)
    right = campaign.clean_tile

    def off_by_one(upset):
        tile = right(upset).clone()
        tile[0, 0] += 1
        return tile

    monkeypatch.setattr(campaign, "clean_tile", off_by_one)
    try:
        with pytest.raises(SimulationError, match="Golden run of tile .* disagrees with the twin"):
            campaign.run(range(5))
    finally:
        close_sessions()


def test_the_rtl_engine_gives_the_same_records_in_parts_and_ends_a_simulator_it_leaves(
        monkeypatch):
    """The simulator runs a chunk part by part while the twin works on the previous part:
    the records do not depend on the parts. A twin that fails while the simulator runs a
    part ends that simulator (its answer would be read by no one); the next chunk starts
    another and gets the same records."""
    from sim.campaign.worker import _thread_sessions
    from sim.cosim import engine
    options = ModelCampaignOptions(DESIGNS[2], model="cnn", images=4, seed=6, engine="rtl")
    campaign = ModelCampaign.prepare(options)
    try:
        whole = campaign.run(range(60))
        monkeypatch.setattr(engine, "PIPELINE_PART", 7)
        assert len(campaign._rtl_parts([campaign.draw(n) for n in range(60)])) > 3
        assert campaign.run(range(60)) == whole
        right, calls = campaign.operation_level, []

        def fails_on_the_third_part(upsets):
            calls.append(len(upsets))
            if len(calls) == 3:
                raise RuntimeError("the twin failed")
            return right(upsets)

        monkeypatch.setattr(campaign, "operation_level", fails_on_the_third_part)
        with pytest.raises(RuntimeError, match="the twin failed"):
            campaign.run(range(60))
        assert not _thread_sessions()
        monkeypatch.setattr(campaign, "operation_level", right)
        assert campaign.run(range(60)) == whole
    finally:
        close_sessions()


def _stored(db):
    try:
        with sqlite3.connect(db) as connection:
            return connection.execute("SELECT count(*) FROM model_experiments").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_a_campaign_killed_by_sigkill_resumes_to_the_uninterrupted_result(tmp_path):
    options = ModelCampaignOptions(DESIGNS[1], model="vit", images=6, seed=8, engine="rtl")
    reference = run_model_campaign(options, 1200, tmp_path / "reference.db")
    db = tmp_path / "killed.db"
    command = [sys.executable, "-m", "sim.cli", "vit", "campaign", "--model", "vit",
               "--rows", "5", "--cols", "2", "--k-max", "16", "--abft", "col",
               "--images", "6", "--seed", "8", "--injections", "1200", "--db", str(db),
               "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while _stored(db) == 0 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    # Chunks of 512: the kill falls after the first commit, before the last (688 to go).
    assert 0 < _stored(db) < 1200, "killed before the first or after the last chunk"
    resumed = subprocess.run(command + ["--json"], capture_output=True, text=True, check=False)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    for key in ("outcomes", "per_module", "per_class", "per_pe", "operation_level_cross_check",
                "model_sdc_rate", "prediction"):
        assert summary[key] == reference[key], key
    assert summary["injections"] == 1200
