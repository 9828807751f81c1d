"""Fault-injection campaigns on a nonlinear unit's registers (sim/nonlinear_campaign.py),
on Verilator, with the softmax unit (and, for the twin check, the LayerNorm unit) at
length 8, with and without its checkers.

The unit-level co-verification under faults: where an upset hits one of the twin's stage
registers in the cycle the unit's ``stage_cycle`` names, the twin with the same bit
flipped through its hook must give the RTL's codes and flags exactly.
"""

import json
import random
import subprocess
import sys

import pytest

from hw.nonlinear.layernorm import LayerNormUnit
from hw.nonlinear.softmax import SoftmaxUnit
from sim.campaign.messages import UnitExperiment
from sim.campaign.outcomes import classify
from sim.nonlinear_campaign import UNIT_OUTCOMES, UnitCampaign, run_unit_campaign

LENGTH, INJECTIONS, SEED = 8, 150, 5
#: The softmax's stages that hold one value per element (the others one per row).
PER_ELEMENT = ("difference", "exponent", "exponential", "output")


def campaign(checkers, **options):
    return UnitCampaign("softmax", length=LENGTH, checkers=checkers, seed=SEED, **options)


@pytest.fixture(scope="module")
def runs():
    """By ``checkers``: the campaign, its first INJECTIONS records and their summary."""
    result = {}
    for checkers in (True, False):
        with campaign(checkers) as unit_campaign:
            records = unit_campaign.run([unit_campaign.experiment(index)
                                         for index in range(INJECTIONS)])
        result[checkers] = (unit_campaign, records, unit_campaign.summarize(records, 1.0))
    return result


def test_experiments_are_pure_functions_of_seed_and_index(runs):
    first, records, _ = runs[True]
    again = campaign(True)
    assert [again.experiment(i) for i in range(INJECTIONS)] == [
        first.experiment(i) for i in range(INJECTIONS)]
    other = UnitCampaign("softmax", length=LENGTH, checkers=True, seed=SEED + 1)
    assert [other.experiment(i) for i in range(20)] != [first.experiment(i)
                                                         for i in range(20)]
    # The whole campaign again on a fresh simulator, then a subset in another order
    # (repeats included) on the same one: the same records.
    subset = random.Random(1).sample(range(INJECTIONS), 12) + [3, 3]
    with again:
        assert again.run([again.experiment(i) for i in range(INJECTIONS)]) == records
        assert again.run([again.experiment(i) for i in subset]) == [records[i] for i in subset]


def test_every_outcome_is_judged_from_codes_flags_and_done(runs):
    for unit_campaign, records, summary in runs.values():
        assert summary["injections"] == INJECTIONS
        assert sum(summary["outcomes"].values()) == INJECTIONS
        assert set(summary["outcomes"]) == set(UNIT_OUTCOMES)
        assert {r.site for r in records} <= {site.path for site in unit_campaign.sites}
        assert all(site.fault_class == "softmax" for site in unit_campaign.sites)
        for record in records:
            assert 1 <= record.cycle <= unit_campaign.latency[record.row]
            golden = unit_campaign.golden[record.row][0]
            if record.outcome != "hang":
                assert (record.outcome in ("sdc", "detected")) == (list(record.codes) != golden)
                assert record.wrong == sum(a != b for a, b in zip(record.codes, golden))
            assert (record.outcome in ("detected", "false_alarm")) == (
                record.outcome != "hang" and any(record.flags))
        per_register = summary["per_register"]
        assert sum(entry["injections"] for entry in per_register.values()) == INJECTIONS
        assert sum(entry["bits"] for entry in per_register.values()) == summary["bits"]
    # The checkers are flip-flops too: the design without them has fewer bits.
    assert runs[False][2]["bits"] < runs[True][2]["bits"]


def test_checkers_detect_and_raise_coverage(runs):
    on, off = runs[True][2], runs[False][2]
    assert on["outcomes"]["detected"] > 0
    assert off["outcomes"]["detected"] == off["outcomes"]["false_alarm"] == 0
    assert off["outcomes"]["sdc"] > 0 and off["coverage"]["rate"] == 0
    assert on["coverage"]["rate"] > off["coverage"]["rate"]
    low, high = on["coverage"]["ci95"]
    assert low <= on["coverage"]["rate"] <= high and high > off["coverage"]["ci95"][1]
    assert on["sdc_rate"]["count"] == on["outcomes"]["sdc"]
    assert not any(any(record.flags) for record in runs[False][1])


def test_the_campaigns_own_twin_check_agrees(runs):
    for _, _, summary in runs.values():
        twin = summary["twin_check"]
        assert twin["agree"] == twin["experiments"], twin["first_disagreement"]


def stage_experiments(unit_campaign, hardware, per_element):
    """Upsets of every stage register of ``hardware`` (the campaign's unit) in its stage
    cycle: the two low bits, the middle and the top one; ``per_element``: the stages with
    one value per element (the others hold one per row)."""
    hardware._MustUse__silence = True
    paths = [site.path for site in unit_campaign.sites]
    experiments = []
    for number, (stage, register) in enumerate(hardware.stage_registers.items()):
        site = paths.index(f"{unit_campaign.unit}.{register.name}")
        row = number % len(unit_campaign.rows)
        n = len(unit_campaign.rows[row])
        index = (3 * number + 1) % n if stage in per_element else 0
        width = unit_campaign.sites[site].width
        for bit in sorted({0, 1, width // 2, width - 1}):
            experiments.append(UnitExperiment(10_000 + len(experiments), row, site, bit,
                                              hardware.stage_cycle(n, stage, index)))
    return experiments


@pytest.mark.parametrize("checkers", [True, False])
def test_the_twin_predicts_upsets_of_its_stage_registers(runs, checkers):
    unit_campaign = runs[checkers][0]
    experiments = stage_experiments(unit_campaign, SoftmaxUnit(length=LENGTH), PER_ELEMENT)
    with unit_campaign:
        records = unit_campaign.run(experiments)
    outcomes = set()
    for experiment, record in zip(experiments, records):
        prediction = unit_campaign.predict(experiment)
        assert prediction is not None, record
        codes, flags = prediction
        assert (list(record.codes), list(record.flags)) == (codes, flags), record
        golden = unit_campaign.golden[experiment.row][0]
        assert record.outcome == classify(hang=False, output_wrong=codes != golden,
                                          alarm=any(flags)), record
        assert not record.late and not record.error
        outcomes.add(record.outcome)
    # Meaningful: the upsets corrupt rows, and with checkers some are caught.
    assert "sdc" in outcomes or "detected" in outcomes
    if checkers:
        assert "detected" in outcomes
    # Out of its stage cycle, a stage register's upset is not the twin's to predict.
    early = experiments[0]
    assert unit_campaign.predict(UnitExperiment(0, early.row, early.site, 0,
                                                early.cycle - 1)) is None


@pytest.mark.parametrize("checkers", [True, False])
def test_the_twin_predicts_upsets_of_the_layernorms_stage_registers(checkers):
    """The same on Verilator for the LayerNorm unit: every stage register it maps, in its
    stage cycle, each bit of a few; the RTL's codes and flags are the twin's."""
    with UnitCampaign("layernorm", length=LENGTH, checkers=checkers, seed=SEED) as unit_campaign:
        experiments = stage_experiments(unit_campaign,
                                        LayerNormUnit(length=LENGTH, checkers=checkers),
                                        ("normalized", "affine", "output"))
        records = unit_campaign.run(experiments)
    outcomes = set()
    for experiment, record in zip(experiments, records):
        prediction = unit_campaign.predict(experiment)
        assert prediction is not None, record
        assert (list(record.codes), list(record.flags)) == prediction, record
        outcomes.add(record.outcome)
    assert ("detected" if checkers else "sdc") in outcomes


def test_a_state_machine_sent_to_an_unused_state_hangs_even_with_a_longer_watchdog():
    state_upsets = []
    for watchdog in (None, 2000):
        with campaign(True, watchdog=watchdog) as unit_campaign:
            site = [s.path for s in unit_campaign.sites].index("softmax.softmax_state")
            # Cycle n + 3 is in pass 2 (state EXPONENTIAL, 2): bit 2 makes 6, no state.
            [record] = unit_campaign.run([UnitExperiment(0, 0, site, 2, LENGTH + 3)])
        state_upsets.append(record.outcome)
    assert state_upsets == ["hang", "hang"]


@pytest.mark.parametrize(("options", "error", "message"), [
    ({"unit": "tanh"}, TypeError, "unit must be one of softmax, gelu, layernorm"),
    ({"length": 512}, ValueError, "length must be at most 511 for the softmax unit"),
    ({"length": 0}, TypeError, "length must be an integer"),
    ({"checkers": "yes"}, TypeError, "checkers must be True or False"),
    ({"injections": 0}, TypeError, "injections must be an integer from 1"),
    ({"seed": -1}, TypeError, "seed must be an integer"),
    ({"rows": 0}, TypeError, "rows must be an integer"),
])
def test_bad_options_are_named(options, error, message):
    arguments = {"unit": "softmax", "length": LENGTH, "checkers": True, "injections": 10,
                 "seed": 0, **options}
    with pytest.raises(error, match=message):
        run_unit_campaign(**arguments)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "sim.cli", *args], capture_output=True,
                          text=True, check=False)


def test_cli_prints_one_json_object():
    result = run_cli("campaign-nonlinear", "--unit", "softmax", "--length", str(LENGTH),
                     "--no-checkers", "--injections", "40", "--seed", "2", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert {"unit", "length", "checkers", "injections", "outcomes", "rates", "sdc_rate",
            "sdc_bits", "coverage", "false_alarm_rate", "errors", "per_register", "twin_check",
            "injections_per_second"} <= set(summary)
    assert (summary["unit"], summary["length"], summary["checkers"],
            summary["injections"]) == ("softmax", LENGTH, False, 40)
    assert set(summary["outcomes"]) == set(UNIT_OUTCOMES)
    assert sum(summary["outcomes"].values()) == 40
    assert set(summary["sdc_rate"]) == {"count", "rate", "ci95"}


@pytest.mark.parametrize(("args", "message"), [
    (["--length", "600"], "--length must be at most 511 for the softmax unit, not 600"),
    (["--injections", "0"],
     "argument --injections: must be an integer from 1 to 1000000000, not 0"),
])
def test_cli_names_a_bad_option(args, message):
    result = run_cli("campaign-nonlinear", "--unit", "softmax", *args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"softerror: error: {message}"]
