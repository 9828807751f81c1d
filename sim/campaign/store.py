"""SQLite store of campaigns and their experiments.

One database can hold several campaigns; a campaign is identified by everything that
decides its experiments and their outcomes (the design's Verilog, the workload, the seed,
the site classes, the sampling mode), not by how many injections were asked for, so
re-running a command resumes it and a larger ``--injections`` extends it. Results are
committed one batch per transaction as they arrive: a campaign killed at any point loses
at most the batches in flight, which a resumed run repeats, and no experiment is stored
twice (it is the primary key).
"""

import csv
import json
import sqlite3
import time
import zlib
from pathlib import Path

import numpy as np

from hw.netlist.fault_sites import FAULT_CLASSES
from sim.campaign.outcomes import OUTCOMES

__all__ = ["CampaignDatabase", "DatabaseError", "decode_tile"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS campaigns (
    id INTEGER PRIMARY KEY,
    identity TEXT UNIQUE NOT NULL,
    description TEXT NOT NULL,
    injections INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sites (
    campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
    site INTEGER NOT NULL,
    path TEXT NOT NULL,
    width INTEGER NOT NULL,
    fault_class TEXT NOT NULL,
    PRIMARY KEY (campaign_id, site)
);
CREATE TABLE IF NOT EXISTS experiments (
    campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
    experiment INTEGER NOT NULL,
    site INTEGER NOT NULL,
    bit INTEGER NOT NULL,
    tile INTEGER NOT NULL,
    cycle INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    wrong_elements INTEGER,
    max_abs_error INTEGER,
    done_cycles INTEGER,
    latent INTEGER NOT NULL,
    faulty_tile BLOB,
    PRIMARY KEY (campaign_id, experiment)
);
CREATE TABLE IF NOT EXISTS runs (
    campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
    started REAL NOT NULL,
    seconds REAL NOT NULL,
    experiments INTEGER NOT NULL,
    workers TEXT NOT NULL
);
"""


class DatabaseError(Exception):
    """The database cannot be opened or written; the message names the file."""


def decode_tile(blob, shape):
    """The faulty output tile stored with an experiment (int32, valid rows x cols)."""
    return np.frombuffer(zlib.decompress(blob), dtype="<i4").reshape(shape)


class CampaignDatabase:
    def __init__(self, path):
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            with self._db:
                self._db.executescript(_SCHEMA)
        except sqlite3.Error as error:
            raise DatabaseError(f"cannot use database {str(path)!r}: {error}") from None

    def close(self):
        self._db.close()

    def campaign(self, identity, description, sites, injections):
        """The id of the campaign with this identity, created (with its sites) if new."""
        key = json.dumps(identity, sort_keys=True)
        with self._db:
            row = self._db.execute("SELECT id FROM campaigns WHERE identity = ?",
                                   (key,)).fetchone()
            if row is not None:
                self._db.execute("UPDATE campaigns SET injections = MAX(injections, ?) "
                                 "WHERE id = ?", (injections, row[0]))
                return row[0]
            cursor = self._db.execute(
                "INSERT INTO campaigns (identity, description, injections, created) "
                "VALUES (?, ?, ?, ?)", (key, json.dumps(description), injections, time.time()))
            campaign_id = cursor.lastrowid
            self._db.executemany(
                "INSERT INTO sites VALUES (?, ?, ?, ?, ?)",
                [(campaign_id, index, site.path, site.width, site.fault_class)
                 for index, site in enumerate(sites)])
            return campaign_id

    def campaign_ids(self):
        return [row[0] for row in self._db.execute("SELECT id FROM campaigns ORDER BY id")]

    def description(self, campaign_id):
        row = self._db.execute("SELECT description, injections FROM campaigns WHERE id = ?",
                               (campaign_id,)).fetchone()
        return {**json.loads(row[0]), "injections": row[1]}

    def done_experiments(self, campaign_id):
        rows = self._db.execute("SELECT experiment FROM experiments WHERE campaign_id = ?",
                                (campaign_id,))
        return np.fromiter((row[0] for row in rows), dtype=np.int64)

    def insert_results(self, campaign_id, records):
        """Store one batch of :class:`sim.campaign.engine.ExperimentRecord`."""
        records = [
            (campaign_id, r.experiment, r.site, r.bit, r.tile, r.cycle, r.outcome,
             r.wrong_elements, r.max_abs_error, r.done_cycles, int(r.latent),
             None if r.faulty_tile is None else
             zlib.compress(np.ascontiguousarray(r.faulty_tile, dtype="<i4").tobytes()))
            for r in records]
        with self._db:
            self._db.executemany("INSERT INTO experiments VALUES "
                                 "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", records)

    def record_run(self, campaign_id, started, seconds, experiments, workers):
        with self._db:
            self._db.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?)",
                             (campaign_id, started, seconds, experiments, workers))

    def last_run(self, campaign_id):
        row = self._db.execute("SELECT seconds, experiments, workers FROM runs WHERE "
                               "campaign_id = ? ORDER BY started DESC LIMIT 1",
                               (campaign_id,)).fetchone()
        return None if row is None else {"seconds": row[0], "experiments": row[1],
                                         "workers": row[2]}

    def counts(self, campaign_id):
        """``{site class: {outcome: count}}`` with every class and outcome present."""
        per_class = {fault_class: dict.fromkeys(OUTCOMES, 0) for fault_class in FAULT_CLASSES}
        rows = self._db.execute(
            "SELECT s.fault_class, e.outcome, COUNT(*) FROM experiments e JOIN sites s "
            "ON s.campaign_id = e.campaign_id AND s.site = e.site WHERE e.campaign_id = ? "
            "GROUP BY s.fault_class, e.outcome", (campaign_id,))
        for fault_class, outcome, count in rows:
            per_class[fault_class][outcome] = count
        return per_class

    def latent_count(self, campaign_id):
        """Experiments whose upset left the control state different from the golden run's."""
        return self._db.execute("SELECT COUNT(*) FROM experiments WHERE campaign_id = ? AND "
                                "latent = 1 AND outcome != 'hang'", (campaign_id,)).fetchone()[0]

    def late_runs(self, campaign_id, tile_cycles):
        """Experiments whose DONE came after ``tile_cycles``: how many, and the latest."""
        return tuple(self._db.execute(
            "SELECT COUNT(*), MAX(done_cycles) FROM experiments WHERE campaign_id = ? AND "
            "done_cycles > ?", (campaign_id, tile_cycles)).fetchone())

    def bits_per_class(self, campaign_id):
        bits = dict.fromkeys(FAULT_CLASSES, 0)
        for fault_class, total in self._db.execute(
                "SELECT fault_class, SUM(width) FROM sites WHERE campaign_id = ? "
                "GROUP BY fault_class", (campaign_id,)):
            bits[fault_class] = total
        return bits

    def export_csv(self, campaign_id, path):
        """One row per experiment, with the site's name and class; returns the row count."""
        rows = self._db.execute(
            "SELECT e.experiment, s.path, s.fault_class, e.bit, e.tile, e.cycle, e.outcome, "
            "e.wrong_elements, e.max_abs_error, e.done_cycles, e.latent FROM experiments e "
            "JOIN sites s "
            "ON s.campaign_id = e.campaign_id AND s.site = e.site WHERE e.campaign_id = ? "
            "ORDER BY e.experiment", (campaign_id,))
        with open(path, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["experiment", "site", "class", "bit", "tile", "cycle", "outcome",
                             "wrong_elements", "max_abs_error", "done_cycles", "latent"])
            count = 0
            for row in rows:
                writer.writerow(row)
                count += 1
        return count
