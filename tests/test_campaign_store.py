"""The campaign database: what it accepts, one runner per campaign, and clear errors on
damaged, locked, foreign or missing files."""

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from hw.config import AcceleratorConfig
from sim.campaign import store
from sim.campaign.engine import CampaignOptions, prepare_campaign, run_campaign
from sim.campaign.store import (APPLICATION_ID, CampaignDatabase, CampaignRunning,
                                NotACampaignDatabase)
from sim.campaign.workload import Workload
from sim.cli.main import main

SMALL = CampaignOptions(AcceleratorConfig(rows=2, cols=2, k_max=8), Workload(2, 8, 2, seed=1),
                        seed=1, injections=200)
ARGUMENTS = ["--rows", "2", "--cols", "2", "--k-max", "8", "--m", "2", "--k", "8", "--n", "2",
             "--seed", "1"]


def softerror(*args):
    return subprocess.run([sys.executable, "-m", "sim.cli.main", *args], capture_output=True,
                          text=True)


def experiments(db_path):
    with sqlite3.connect(db_path) as db:
        return db.execute("SELECT * FROM experiments ORDER BY experiment").fetchall()


@pytest.fixture(scope="module")
def campaign_db(tmp_path_factory):
    """A finished small campaign; tests copy it before they change it."""
    path = tmp_path_factory.mktemp("store") / "small.db"
    run_campaign(SMALL, path)
    return path


def foreign_database(path, application_id=0):
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (day TEXT, text TEXT)")
        db.execute("INSERT INTO notes VALUES ('monday', 'buy milk')")
        db.execute(f"PRAGMA application_id = {application_id}")
    db.close()


@pytest.mark.parametrize("application_id, message", [
    (0, "application_id 0x0, tables: notes"),
    (0x0F055112, "application_id 0xf055112, tables: notes"),
])
def test_a_foreign_database_is_refused_and_left_as_it_was(tmp_path, application_id, message):
    path = tmp_path / "notes.db"
    foreign_database(path, application_id)
    before = path.read_bytes()
    with pytest.raises(NotACampaignDatabase) as error:
        CampaignDatabase(path)
    assert str(error.value) == (f"{str(path)!r} is another program's SQLite database "
                                f"({message}), not a softerror campaign database")
    result = softerror("campaign", *ARGUMENTS, "--db", str(path))
    assert (result.returncode, result.stderr) == (2, f"softerror: error: --db: {error.value}\n")
    result = softerror("report", "--db", str(path))
    assert (result.returncode, result.stderr) == (2, f"softerror: error: --db: {error.value}\n")
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["notes.db"]


def test_a_new_database_says_what_it_is_and_an_older_one_is_adopted(tmp_path):
    new = tmp_path / "new.db"
    CampaignDatabase(new).close()
    with sqlite3.connect(new) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    older = tmp_path / "older.db"
    with sqlite3.connect(older) as db:
        for statement in store._SCHEMA:
            db.execute(statement)
        db.execute("INSERT INTO campaigns VALUES (1, '{}', '{}', 5, 0.0)")
    db.close()
    database = CampaignDatabase(older)
    assert database.campaign_ids() == [1]
    database.close()
    with sqlite3.connect(older) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        db.execute("PRAGMA user_version = 3")
    with pytest.raises(NotACampaignDatabase, match=r"written by a newer softerror \(schema 3; "
                                                   r"this one reads schema 2 and older\)"):
        CampaignDatabase(older)


def test_a_schema_1_database_is_upgraded_keeping_its_model_experiments(tmp_path):
    """Schema 1 required every model experiment's operation-level verdict; schema 2 lets a
    campaign that does not run that model store none."""
    path = tmp_path / "schema1.db"
    with sqlite3.connect(path) as db:
        for statement in store._SCHEMA:
            db.execute(statement.replace("operation_level_sdc INTEGER,",
                                         "operation_level_sdc INTEGER NOT NULL,"))
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute("PRAGMA user_version = 1")
        db.execute("INSERT INTO campaigns VALUES (1, '{}', '{}', 2, 0.0)")
        db.execute("INSERT INTO model_experiments VALUES (1, 0, 3, 'fc2', 'blocks.0.mlp.fc2', "
                   "7, 'array.pe_0_0.accumulator', 'accumulator', 5, 9, 0, 'keep', "
                   "'tolerated', 4, 4, 4, -0.5, 'equal', 1)")
        with pytest.raises(sqlite3.IntegrityError):
            db.execute("INSERT INTO model_experiments (campaign_id, experiment, "
                       "operation_level_sdc) VALUES (1, 1, NULL)")
    db.close()
    database = CampaignDatabase(path)
    [kept] = database.model_records(1)
    assert (kept.experiment, kept.outcome, kept.operation_level_sdc) == (0, "tolerated", True)
    database.insert_model_results(1, [dataclasses.replace(kept, experiment=1,
                                                          operation_level_sdc=None)])
    assert [r.operation_level_sdc for r in database.model_records(1)] == [True, None]
    database.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION == 2
    db.close()


def test_report_needs_an_existing_database_and_creates_none(tmp_path):
    path = tmp_path / "new.db"
    result = softerror("report", "--db", str(path))
    assert (result.returncode, result.stderr) == (
        2, f"softerror: error: --db: {str(path)!r} does not exist\n")
    assert os.listdir(tmp_path) == []


def test_a_rejected_campaign_creates_no_database(tmp_path):
    path = tmp_path / "c.db"
    result = softerror("campaign", *ARGUMENTS, "--db", str(path), "--sites", "checksum")
    assert result.stderr.splitlines()[-1] == (
        "softerror: error: --sites: this design has no 'checksum' sites (it has: operand, "
        "accumulator, control, output)")
    assert os.listdir(tmp_path) == []


def zero_pages(path, first, last):
    data = bytearray(path.read_bytes())
    page = 4096
    data[first * page:(last + 1) * page] = bytes((last + 1 - first) * page)
    path.write_bytes(bytes(data))


def test_a_damaged_database_is_one_line(tmp_path, campaign_db):
    path = tmp_path / "damaged.db"
    path.write_bytes(campaign_db.read_bytes())
    zero_pages(path, 1, path.stat().st_size // 4096 - 1)
    for command in (["report", "--db", str(path)], ["campaign", *ARGUMENTS, "--db", str(path),
                                                    "--injections", "200"]):
        result = softerror(*command)
        assert (result.returncode, result.stderr.splitlines()[-1:]) == (
            1, [f"softerror: database {str(path)!r}: database disk image is malformed"])
        assert "Traceback" not in result.stderr
    zero_pages(path, 0, 0)
    result = softerror("report", "--db", str(path))
    assert (result.returncode, result.stderr) == (
        2, f"softerror: error: --db: cannot use database {str(path)!r}: file is not a "
           "database\n")


def test_a_locked_database_is_one_line(tmp_path, campaign_db, monkeypatch, capsys):
    path = tmp_path / "locked.db"
    path.write_bytes(campaign_db.read_bytes())
    monkeypatch.setattr(store, "BUSY_TIMEOUT", 0.1)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        status = main(["campaign", *ARGUMENTS, "--db", str(path), "--injections", "300"])
    finally:
        holder.close()
    assert (status, capsys.readouterr().err.splitlines()[-1:]) == (
        1, [f"softerror: database {str(path)!r}: database is locked"])


def test_one_process_at_a_time_runs_a_campaign(tmp_path):
    prepared = prepare_campaign(SMALL)
    path = tmp_path / "c.db"
    first, second = CampaignDatabase(path), CampaignDatabase(path)
    arguments = (prepared.identity, prepared.description, prepared.sites, 10)
    assert first.campaign(*arguments) == 1
    with pytest.raises(CampaignRunning) as error:
        second.campaign(*arguments)
    assert str(error.value) == (
        f"campaign 1 of {str(path)!r} is running in another process (pid {os.getpid()}); "
        "wait for it to finish, or stop it and run this command again to resume")
    other = {**prepared.identity, "seed": 2}
    assert second.campaign(other, prepared.description, prepared.sites, 10) == 2
    first.close()
    assert second.campaign(*arguments) == 1
    second.close()
    assert sorted(os.listdir(tmp_path)) == ["c.db"]


def test_a_second_identical_campaign_says_the_first_is_running(tmp_path):
    """Two real processes: the second refuses while the first runs, and resumes after."""
    command = ["campaign", *ARGUMENTS, "--injections", "3000", "--json"]
    reference = tmp_path / "reference.db"
    assert softerror(*command, "--db", str(reference)).returncode == 0
    path = tmp_path / "c.db"
    first = subprocess.Popen([sys.executable, "-m", "sim.cli.main", *command, "--db", str(path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and first.poll() is None:
            time.sleep(0.05)
            try:
                if experiments(path):
                    break
            except sqlite3.Error:
                continue
        first.send_signal(signal.SIGSTOP)     # it holds the campaign, stopped halfway
        assert 0 < len(experiments(path)) < 3000, "the first campaign did not stop halfway"
        second = softerror(*command, "--db", str(path))
        assert (second.returncode, second.stderr) == (
            1, f"softerror: campaign 1 of {str(path)!r} is running in another process (pid "
               f"{first.pid}); wait for it to finish, or stop it and run this command again "
               "to resume\n")
    finally:
        first.kill()
        first.wait()
    second = softerror(*command, "--db", str(path))
    assert second.returncode == 0, second.stderr
    assert experiments(path) == experiments(reference)


def test_report_csv_errors_name_the_option_and_lose_nothing(tmp_path, campaign_db):
    directory = tmp_path / "out"
    directory.mkdir()
    (directory / "kept.txt").write_text("kept")
    for path, reason in [(directory, "Is a directory"),
                         (tmp_path / "missing" / "c.csv", "No such file or directory"),
                         ("/sys/softerror.csv", "Permission denied")]:
        result = softerror("report", "--db", str(campaign_db), "--csv", str(path))
        assert (result.returncode, result.stderr) == (
            2, f"softerror: error: --csv {str(path)!r}: cannot write: {reason}\n")
    assert sorted(os.listdir(tmp_path)) == ["out"]
    assert os.listdir(directory) == ["kept.txt"]
    assert not os.path.exists("/sys/softerror.csv")
