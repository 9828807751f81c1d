"""Register-level fault injection on the RTL: flips, outcomes, storage, resume, parallelism."""

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hw.config import AcceleratorConfig
from sim.build import build_design
from sim.campaign.engine import CampaignOptions, _batches, prepare_campaign, replay, run_campaign
from sim.campaign.plan import ExperimentPlan
from sim.campaign.store import CampaignDatabase, decode_tile
from sim.campaign.worker import close_sessions, run_batch
from sim.campaign.workload import Workload
from sim.simulator import run_testbench
from sw.twin.protection import RangeBounds

CONFIG = AcceleratorConfig(rows=8, cols=8, k_max=256)
ONE_TILE = CampaignOptions(CONFIG, Workload(8, 64, 8, seed=3), seed=5, injections=600)


def experiments(db_path):
    """Every stored experiment, comparable across databases."""
    with sqlite3.connect(db_path) as db:
        return db.execute("SELECT experiment, site, bit, tile, cycle, outcome, wrong_elements, "
                          "max_abs_error, done_cycles, latent, faulty_tile FROM experiments "
                          "ORDER BY experiment").fetchall()


def _stored(db_path):
    """How many experiments a running campaign has stored (0 before its tables exist)."""
    connection = sqlite3.connect(db_path)
    try:
        return connection.execute("SELECT COUNT(*) FROM experiments").fetchone()[0]
    except sqlite3.Error:
        return 0
    finally:
        connection.close()


def test_an_upset_lands_and_the_next_load_overwrites_it(tmp_path):
    report = run_testbench(build_design(CONFIG), "flip_testbench", {"design": vars(CONFIG)},
                           tmp_path)
    assert report["operand"] == [0, 8, 0]
    before, landed, later = report["accumulator"]
    assert landed == before ^ (1 << 31) and later == landed
    before, landed = report["public"]
    assert landed == before ^ 1
    before, landed, read_back = report["row"]
    assert landed == before ^ (1 << 200) and read_back == landed
    assert report["rerun"] == report["golden"]


def test_outcomes_and_errors_match_what_the_twin_predicts():
    tile_cycles = CONFIG.tile_cycles(64)
    upsets = [
        ("array.pe_2_5.accumulator", 7, 0, 30),       # during COMPUTE: C[2][5] +- 2**7
        ("array.pe_6_1.accumulator", 31, 0, 50),      # the sign bit, wrapped
        ("results.row_4", 3 * 32 + 12, 0, tile_cycles + 1),   # after the drain, before the read
        ("array.pe_0_0.a_reg", 2, 0, tile_cycles - 2),         # operands are zero while draining
        ("controller.tile_state", 1, 0, 10),          # COMPUTE (1) becomes 3, a state with no exit
    ]
    records = replay(ONE_TILE, upsets)
    golden = np.array(ONE_TILE.workload.tiles(8, 8)[0].expected)

    for record, (i, j, bit) in zip(records[:3], [(2, 5, 7), (6, 1, 31), (4, 3, 12)]):
        assert record.outcome == "sdc"
        assert (record.wrong_elements, record.max_abs_error) == (1, 2**bit)
        difference = record.faulty_tile.astype(np.int64) - golden
        assert list(zip(*np.nonzero(difference))) == [(i, j)]
        assert abs(difference[i, j]) == 2**bit
    assert records[3].outcome == "masked" and records[3].wrong_elements == 0
    assert records[3].faulty_tile is None
    assert records[4].outcome == "hang"


def test_a_late_tile_is_classified_by_its_output_and_a_hang_stores_no_cycle():
    """The upsets of the issue: the step counter pushed past its target (270) near the end
    of COMPUTE counts to 511, wraps and counts again: DONE 512 - 2**bit cycles late, after
    the old watchdog of 2 x 279 = 558 cycles, with the output re-accumulated."""
    options = replace(ONE_TILE, workload=Workload(8, 256, 8, seed=3))
    tile_cycles = CONFIG.tile_cycles(256)
    upsets = [("controller.step", bit, 0, 262) for bit in (4, 5, 6, 7)]
    upsets.append(("controller.tile_state", 1, 0, 10))    # COMPUTE becomes 3: no exit
    *late, hang = replay(options, upsets)
    assert [record.done_cycles for record in late] == [tile_cycles + 512 - 2**bit
                                                       for bit in (4, 5, 6, 7)]
    assert [record.done_cycles for record in late] == [775, 759, 727, 663]
    assert {(record.outcome, record.wrong_elements) for record in late} == {("sdc", 64)}
    assert (hang.outcome, hang.done_cycles, hang.wrong_elements) == ("hang", None, None)


def test_a_batch_reports_the_cycles_the_simulator_ran():
    """A batch's cycles: the golden run when the tile is new (its operands are written
    through the backdoor, in no cycle), then each experiment's run, and the watchdog's wait
    after a run that did not finish in time."""
    from sim.harness import experiment_cycles
    prepared = prepare_campaign(replace(ONE_TILE, classes=("control",)))
    first, second = _batches(prepared, prepared.plan(np.arange(600)), 1)[:2]
    assert first.tile == second.tile
    run = experiment_cycles(CONFIG, 64)
    late = prepared.watchdog_cycles + CONFIG.rows + 4
    try:
        batches = [run_batch(first), run_batch(second)]
    finally:
        close_sessions()
    overdue = [[result.done_cycles is None or result.done_cycles > CONFIG.tile_cycles(64)
                for result in batch.results] for batch in batches]
    expected = [sum(run + late * over for over in batch) for batch in overdue]
    assert 0 < sum(map(sum, overdue)) < len(first.experiments) + len(second.experiments)
    assert [batch.cycles for batch in batches] == [run + expected[0], expected[1]]


def test_what_the_watchdog_calls_a_hang_never_finishes():
    """The watchdog's bound (2 x tile + 2**step bits) is generous: every control upset it
    calls a hang still hangs with four times the wait, and the rest end the same way."""
    prepared = prepare_campaign(replace(ONE_TILE, classes=("control",)))
    bits = [(site, bit) for site, register in enumerate(prepared.sites)
            for bit in range(register.width)]
    upsets = [(site, bit, cycle) for cycle in (3, 40, 80, 95) for site, bit in bits]
    plan = ExperimentPlan(*(np.array(column) for column in
                            (range(len(upsets)), *zip(*upsets))))
    outcomes = {}
    try:
        for watchdog in (prepared.watchdog_cycles, 4 * prepared.watchdog_cycles):
            tasks = [replace(task, watchdog_cycles=watchdog)
                     for task in _batches(prepared, plan, 1)]
            outcomes[watchdog] = [(result.outcome, result.done_cycles)
                                  for task in tasks for result in run_batch(task).results]
    finally:
        close_sessions()
    bounded, longer = outcomes.values()
    assert bounded == longer
    assert 0 < sum(outcome == "hang" for outcome, _ in bounded) < len(upsets)
    assert max(cycles for outcome, cycles in bounded if cycles is not None) \
        > 2 * CONFIG.tile_cycles(64)


def test_campaign_stores_every_experiment_and_summarises(tmp_path):
    db = tmp_path / "campaign.db"
    summary = run_campaign(ONE_TILE, db)
    assert summary["injections"] == 600
    assert set(summary["outcomes"]) == {"masked", "corrected", "detected", "sdc",
                                        "false_alarm", "hang"}
    assert sum(summary["outcomes"].values()) == 600
    assert sum(sum(c.values()) for c in summary["per_class"].values()) == 600
    assert summary["outcomes"]["sdc"] > 0 and summary["outcomes"]["masked"] > 0
    for counts in summary["per_class"].values():
        assert counts["corrected"] == counts["detected"] == counts["false_alarm"] == 0
    rows = experiments(db)
    assert [row[0] for row in rows] == list(range(600))
    for row in rows:
        if row[5] == "sdc":
            tile = decode_tile(row[10], (8, 8))
            assert np.count_nonzero(tile != np.array(ONE_TILE.workload.tiles(8, 8)[0].expected)) \
                == row[6]
    # Re-running is a no-op; asking for more extends the same campaign.
    assert run_campaign(ONE_TILE, db)["injections"] == 600
    assert experiments(db) == rows
    extended = run_campaign(replace(ONE_TILE, injections=700), db)
    assert extended["injections"] == 700 and experiments(db)[:600] == rows


def test_same_seed_same_results_whatever_the_executor(tmp_path):
    run_campaign(ONE_TILE, tmp_path / "one.db")
    run_campaign(ONE_TILE, tmp_path / "pool.db", workers=2)
    assert experiments(tmp_path / "pool.db") == experiments(tmp_path / "one.db")


def test_class_selection_and_exhaustive_mode(tmp_path):
    options = replace(ONE_TILE, classes=("control",), exhaustive_cycle=40)
    summary = run_campaign(options, tmp_path / "exhaustive.db")
    control_bits = summary["bits"]["control"]
    assert summary["injections"] == control_bits > 0
    assert sum(summary["per_class"]["control"].values()) == control_bits
    rows = experiments(tmp_path / "exhaustive.db")
    assert len({(row[1], row[2]) for row in rows}) == control_bits
    assert {row[4] for row in rows} == {40}


def test_every_site_can_be_upset():
    """All sites resolve in the simulator: one experiment per register, all classes."""
    options = replace(ONE_TILE, injections=1)
    prepared_sites = build_design(CONFIG).fault_sites()
    records = replay(options, [(site.path, 0, 0, 5) for site in prepared_sites])
    assert len(records) == len(prepared_sites)
    assert {record.outcome for record in records} <= {"masked", "sdc", "hang"}


def test_a_killed_campaign_resumes_to_the_uninterrupted_result(tmp_path):
    arguments = ["--rows", "8", "--cols", "8", "--k-max", "256", "--m", "8", "--k", "64",
                 "--n", "8", "--seed", "11", "--injections", "6000"]
    reference = tmp_path / "reference.db"
    subprocess.run([sys.executable, "-m", "sim.cli.main", "campaign", *arguments, "--db",
                    str(reference)], check=True, capture_output=True)
    killed = tmp_path / "killed.db"
    process = subprocess.Popen([sys.executable, "-m", "sim.cli.main", "campaign", *arguments,
                                "--db", str(killed)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    stored = 0
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
        stored = _stored(killed)
        if stored:
            break
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 0 < stored < 6000, "the campaign was not killed halfway"
    resumed = subprocess.run([sys.executable, "-m", "sim.cli.main", "campaign", *arguments, "--db",
                              str(killed), "--json"], check=True, capture_output=True, text=True)
    assert '"injections": 6000' in resumed.stdout
    assert experiments(killed) == experiments(reference)


# Four tiles, so that two workers finish batches out of order.
MULTI_TILE = CampaignOptions(CONFIG, Workload(16, 32, 16, seed=11), seed=11, injections=2400)
MULTI_TILE_ARGUMENTS = ["campaign", "--rows", "8", "--cols", "8", "--k-max", "256", "--m", "16",
                        "--k", "32", "--n", "16", "--seed", "11", "--injections", "2400"]


@pytest.fixture(scope="module")
def multi_tile_reference(tmp_path_factory):
    """The uninterrupted multi-tile campaign, on one worker."""
    db = tmp_path_factory.mktemp("reference") / "reference.db"
    run_campaign(MULTI_TILE, db)
    return db


def test_resume_fills_a_non_contiguous_set_of_experiments(tmp_path, multi_tile_reference):
    holes = tmp_path / "holes.db"
    shutil.copy(multi_tile_reference, holes)
    with sqlite3.connect(holes) as db:
        missing = db.execute("DELETE FROM experiments WHERE experiment % 3 = 1 OR "
                             "experiment BETWEEN 700 AND 1100").rowcount
    db.close()
    summary = run_campaign(MULTI_TILE, holes, workers=2)
    assert summary["last_run"]["experiments"] == missing > 1000
    assert experiments(holes) == experiments(multi_tile_reference)


def _live(pids):
    """Those of ``pids`` still running (a zombie has ended)."""
    live = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            live.add(pid)
    return live


def _descendants(pid):
    """Every running process below ``pid``, with its command line, from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _live([int(entry)]):
            try:
                parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
                command = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")[0].decode()
            except OSError:
                continue
            children.setdefault(parent, []).append((int(entry), command))
    found, frontier = {}, [pid]
    while frontier:
        for child, command in children.get(frontier.pop(), []):
            found[child] = command
            frontier.append(child)
    return found


@pytest.mark.parametrize("stop", ["SIGKILL", "SIGTERM", "Ctrl-C"])
def test_a_stopped_two_worker_campaign_leaves_nothing_behind_and_resumes_exactly(
        tmp_path, multi_tile_reference, stop):
    """Workers, simulators and the resource tracker end with the campaign process, however
    it is stopped, their temporary directories go, and a resumed run is exact."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    db = tmp_path / "stopped.db"
    command = [sys.executable, "-m", "sim.cli.main", *MULTI_TILE_ARGUMENTS, "--workers", "2",
               "--db", str(db)]
    # A shell starts background jobs with SIGINT ignored; Ctrl-C must reach this campaign.
    process = subprocess.Popen(command, env={**os.environ, "TMPDIR": str(temporary)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    simulator = str(build_design(CONFIG).binary)
    deadline = time.time() + 300
    stored, tree = 0, {}
    while time.time() < deadline and process.poll() is None and not (
            stored and list(tree.values()).count(simulator) == 2):
        time.sleep(0.05)
        tree = _descendants(process.pid)
        stored = _stored(db)
    if stop == "Ctrl-C":
        os.killpg(process.pid, signal.SIGINT)        # what a terminal sends: the whole group
    else:
        process.send_signal(getattr(signal, stop))
    _, stderr = process.communicate(timeout=120)
    assert 0 < stored < 2400, "the campaign was not stopped halfway"
    assert list(tree.values()).count(simulator) == 2 and len(tree) >= 5, tree
    deadline = time.time() + 60
    while _live(tree) and time.time() < deadline:
        time.sleep(0.1)
    assert _live(tree) == set(), {pid: tree[pid] for pid in _live(tree)}
    assert list(temporary.iterdir()) == []
    expected = {"SIGKILL": -signal.SIGKILL, "SIGTERM": 143, "Ctrl-C": 130}[stop]
    assert process.returncode == expected, stderr
    if stop != "SIGKILL":
        assert stderr.splitlines()[-1] == ("softerror: terminated" if stop == "SIGTERM"
                                           else "softerror: interrupted")
        assert "Traceback" not in stderr
    subprocess.run([*command, "--json"], check=True, capture_output=True)
    assert experiments(db) == experiments(multi_tile_reference)


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_dask(tmp_path, workers):
    """A real Dask scheduler on localhost and ``workers`` one-thread workers."""
    address = f"tcp://127.0.0.1:{_free_port()}"
    dask = os.path.join(os.path.dirname(sys.executable), "dask")
    processes = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port",
                                   address.rsplit(":", 1)[1], "--no-dashboard"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    processes += [subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--nworkers",
                                    "1", "--no-dashboard"], cwd=tmp_path,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                  for _ in range(workers)]
    from distributed import Client
    with Client(address, timeout="60s") as client:
        if workers:
            client.wait_for_workers(workers, timeout=60)
    return address, processes


def _stop(processes):
    for process in reversed(processes):
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def dask_scheduler(tmp_path):
    """A real Dask scheduler and one worker on localhost."""
    address, processes = _start_dask(tmp_path, workers=1)
    try:
        yield address
    finally:
        _stop(processes)


def test_dask_cluster_gives_the_same_results(tmp_path, dask_scheduler):
    local = run_campaign(ONE_TILE, tmp_path / "local.db")
    remote = run_campaign(ONE_TILE, tmp_path / "dask.db", scheduler=dask_scheduler)
    assert remote["last_run"]["workers"] == f"dask {dask_scheduler}"
    assert remote["per_class"] == local["per_class"]
    assert experiments(tmp_path / "dask.db") == experiments(tmp_path / "local.db")


def test_a_scheduler_without_workers_says_so_and_gives_up_after_its_timeout(tmp_path):
    address, processes = _start_dask(tmp_path, workers=0)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "sim.cli.main", *MULTI_TILE_ARGUMENTS, "--db",
             str(tmp_path / "c.db"), "--scheduler", address, "--scheduler-timeout", "2"],
            capture_output=True, text=True, timeout=300)
    finally:
        _stop(processes)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-2:] == [
        f"softerror: waiting for a Dask worker to join {address} (at most 2 s: "
        "--scheduler-timeout)",
        f"softerror: no Dask worker joined {address} within 2 s (--scheduler-timeout)"]


def test_a_lost_scheduler_is_one_line_and_the_results_are_kept(tmp_path, multi_tile_reference):
    address, processes = _start_dask(tmp_path, workers=1)
    db = tmp_path / "c.db"
    try:
        campaign = subprocess.Popen(
            [sys.executable, "-m", "sim.cli.main", *MULTI_TILE_ARGUMENTS, "--db", str(db),
             "--scheduler", address], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        stored, deadline = 0, time.time() + 300
        while not stored and time.time() < deadline and campaign.poll() is None:
            time.sleep(0.05)
            stored = _stored(db)
        processes[0].kill()
        _, stderr = campaign.communicate(timeout=120)
    finally:
        _stop(processes)
    assert 0 < stored < 2400, "the scheduler was not lost halfway"
    assert (campaign.returncode, stderr) == (
        1, f"softerror: lost the Dask scheduler at {address}; the results so far are stored: "
           "run the command again to resume\n")
    assert len(experiments(db)) >= stored
    subprocess.run([sys.executable, "-m", "sim.cli.main", *MULTI_TILE_ARGUMENTS, "--db",
                    str(db)], check=True, capture_output=True)
    assert experiments(db) == experiments(multi_tile_reference)


def test_temporary_directories_and_simulators_go_when_a_campaign_fails(tmp_path, monkeypatch):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))
    monkeypatch.setattr(tempfile, "tempdir", None)

    def fail_after_a_batch(done, total):
        if done:
            raise RuntimeError("the progress display broke")

    for workers in (1, 2):
        with pytest.raises(RuntimeError, match="the progress display broke"):
            run_campaign(MULTI_TILE, tmp_path / f"{workers}.db", workers=workers,
                         progress=fail_after_a_batch)
        assert list(temporary.iterdir()) == []
        simulator = str(build_design(CONFIG).binary)
        assert simulator not in _descendants(os.getpid()).values()
    run_campaign(replace(MULTI_TILE, injections=100), tmp_path / "done.db")
    assert list(temporary.iterdir()) == []


def test_single_tile_experiments_match_whole_multi_tile_runs(tmp_path):
    """A campaign simulates only the tile an upset hits; check that against whole GEMMs."""
    options = replace(ONE_TILE, workload=Workload(16, 32, 8, seed=4), injections=1)
    sites = build_design(CONFIG).fault_sites()
    rng = np.random.default_rng(0)
    tile_cycles = CONFIG.tile_cycles(32)
    upsets = [(sites[s].path, int(rng.integers(sites[s].width)), 0,
               int(rng.integers(1, tile_cycles)))
              for s in rng.integers(len(sites), size=60)]
    records = replay(options, upsets)
    whole = run_testbench(build_design(CONFIG), "tile_testbench",
                          {"design": vars(CONFIG), "workload": vars(options.workload),
                           "upsets": upsets}, tmp_path)["results"]
    golden = [np.array(tile.expected) for tile in options.workload.tiles(8, 8)]
    checked_later_tiles = 0
    for record, outputs in zip(records, whole):
        if record.outcome == "hang":
            assert outputs[0] is None
            continue
        first = np.array(outputs[0])
        if record.outcome == "sdc":
            assert np.array_equal(first, record.faulty_tile)
        else:
            assert np.array_equal(first, golden[0])
        if not record.latent:
            assert np.array_equal(np.array(outputs[1]), golden[1])
            checked_later_tiles += 1
    assert checked_later_tiles > 40


def test_database_holds_campaigns_apart(tmp_path):
    db = tmp_path / "two.db"
    run_campaign(replace(ONE_TILE, injections=100), db)
    run_campaign(replace(ONE_TILE, injections=100, seed=6), db)
    database = CampaignDatabase(db)
    assert database.campaign_ids() == [1, 2]
    database.close()


PROTECTED = AcceleratorConfig(rows=8, cols=8, k_max=256, abft="rowcol", range_check=True)


def protected(abft, classes, injections=1500, **changes):
    return replace(ONE_TILE, config=replace(PROTECTED, abft=abft), classes=classes,
                   injections=injections, **changes)


def false_alarm_sites(db_path):
    with sqlite3.connect(db_path) as db:
        return db.execute("SELECT s.path FROM experiments e JOIN sites s ON "
                          "s.campaign_id = e.campaign_id AND s.site = e.site "
                          "WHERE e.outcome = 'false_alarm'").fetchall()


@pytest.mark.parametrize("abft", ["rowcol", "col"])
def test_checksums_catch_every_corrupting_upset_in_the_array(tmp_path, abft):
    summary = run_campaign(protected(abft, ("operand", "accumulator")), tmp_path / "c.db")
    for fault_class in ("operand", "accumulator"):
        counts = summary["per_class"][fault_class]
        assert counts["sdc"] == 0 and counts["hang"] == 0
        if abft == "rowcol":
            assert counts["detected"] == 0 and counts["corrected"] > 100
        else:
            assert counts["corrected"] == 0 and counts["detected"] > 100
        assert summary["coverage"][fault_class]["coverage"] == 1.0
    # col watches B operands with integrity counters: an upset B that met only zero A
    # values raises an alarm for nothing. Rare with these operands, and only there.
    alarms = false_alarm_sites(tmp_path / "c.db")
    if abft == "rowcol":
        assert alarms == []
    else:
        assert len(alarms) <= 0.01 * sum(summary["per_class"]["operand"].values())
        assert all(path.endswith("b_reg") or path.startswith("b_skew") for path, in alarms)


def test_upsets_in_checksum_registers_are_false_alarms_not_errors(tmp_path):
    summary = run_campaign(protected("rowcol", ("checksum",), injections=800), tmp_path / "c.db")
    counts = summary["per_class"]["checksum"]
    assert counts["false_alarm"] > 100 and counts["masked"] > 100
    assert counts["sdc"] == counts["detected"] == counts["corrected"] == 0
    assert summary["coverage"]["checksum"]["false_alarm_rate"] == counts["false_alarm"] / 800


def test_range_checker_upsets_are_flagged_when_they_change_the_output(tmp_path):
    options = protected("rowcol", ("range",), injections=600,
                        range_bounds=RangeBounds(-400_000, 400_000))
    counts = run_campaign(options, tmp_path / "c.db")["per_class"]["range"]
    assert counts["sdc"] == 0 and counts["hang"] == 0
    assert counts["detected"] > 0 and counts["masked"] > 0


def test_bounds_that_clamp_the_clean_output_are_refused(tmp_path):
    options = protected("none", ("operand",), range_bounds=RangeBounds(-1000, 1000))
    with pytest.raises(ValueError, match=r"clamp the clean output of tile 0 \(from -?\d+ to "
                                         r"\d+\): every experiment would raise the alarm"):
        run_campaign(options, tmp_path / "c.db")
