"""SQLite store of campaigns and their experiments.

One database can hold several campaigns; a campaign is identified by everything that
decides its experiments and their outcomes (the design's Verilog, the workload, the seed,
the site classes, the sampling mode), not by how many injections were asked for, so
re-running a command resumes it and a larger ``--injections`` extends it. Results are
committed one batch per transaction as they arrive: a campaign killed at any point loses
at most the batches in flight, which a resumed run repeats, and no experiment is stored
twice (it is the primary key).

A campaign database says what it is in its header (``PRAGMA application_id`` and
``user_version``); any other SQLite file is refused before anything is written to it.
One process at a time runs a given campaign: it holds an advisory lock
(:func:`fcntl.flock`) on ``<database>.campaign-<id>.lock`` for as long as the database is
open, which the kernel releases however the process ends; other campaigns of the same
database can run meanwhile.
"""

import csv
import dataclasses
import errno
import fcntl
import functools
import json
import os
import sqlite3
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hw.netlist.fault_sites import FAULT_CLASSES
from sim.campaign.outcomes import OUTCOMES
from sim.cosim.record import ModelRecord

__all__ = ["CampaignDatabase", "DatabaseError", "NotACampaignDatabase", "CampaignRunning",
           "StoredCampaign", "StoredSite", "ExperimentRecord", "RunRecord", "check_database",
           "decode_tile", "APPLICATION_ID", "SCHEMA_VERSION"]

#: ``PRAGMA application_id`` of a campaign database: "SErr".
APPLICATION_ID = 0x53457272
#: ``PRAGMA user_version``: the schema below (2: a model campaign's operation-level
#: verdict may be NULL, for campaigns that do not run that model).
SCHEMA_VERSION = 2
#: Seconds to wait for another connection's write transaction before giving up.
BUSY_TIMEOUT = 60

#: The model campaigns' experiments (schema 2: ``operation_level_sdc`` may be NULL).
_MODEL_EXPERIMENTS_TABLE = """CREATE TABLE IF NOT EXISTS model_experiments (
    campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
    experiment INTEGER NOT NULL,
    image INTEGER NOT NULL,
    module TEXT NOT NULL,
    gemm_site TEXT NOT NULL,
    pass_index INTEGER NOT NULL,
    site TEXT NOT NULL,
    fault_class TEXT NOT NULL,
    bit INTEGER NOT NULL,
    cycle INTEGER NOT NULL,
    tile_equal INTEGER NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    label INTEGER NOT NULL,
    clean_top1 INTEGER NOT NULL,
    top1 INTEGER NOT NULL,
    margin_change REAL NOT NULL,
    predicted TEXT NOT NULL,
    operation_level_sdc INTEGER,
    PRIMARY KEY (campaign_id, experiment)
)"""

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS campaigns (
    id INTEGER PRIMARY KEY,
    identity TEXT UNIQUE NOT NULL,
    description TEXT NOT NULL,
    injections INTEGER NOT NULL,
    created REAL NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS sites (
    campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
    site INTEGER NOT NULL,
    path TEXT NOT NULL,
    width INTEGER NOT NULL,
    fault_class TEXT NOT NULL,
    PRIMARY KEY (campaign_id, site)
)""",
    """CREATE TABLE IF NOT EXISTS experiments (
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
)""",
    _MODEL_EXPERIMENTS_TABLE,
    """CREATE TABLE IF NOT EXISTS runs (
    campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
    started REAL NOT NULL,
    seconds REAL NOT NULL,
    experiments INTEGER NOT NULL,
    workers TEXT NOT NULL
)""",
)
#: The tables of a database written before the header said what it is.
_LEGACY_TABLES = {"campaigns", "sites", "experiments", "runs"}
#: The tables of this schema.
_TABLES = _LEGACY_TABLES | {"model_experiments"}
_SQLITE_MAGIC = b"SQLite format 3\0"


class DatabaseError(Exception):
    """The database failed in use (damaged, locked, unwritable); the message names the file."""


class NotACampaignDatabase(DatabaseError):
    """The path is missing, not SQLite, or another program's database; nothing was written."""


class CampaignRunning(DatabaseError):
    """Another process is running this campaign on this database."""


@dataclass(frozen=True)
class StoredCampaign:
    """A campaign's row: its id, its description (JSON, written by the engine) and the
    number of injections asked for so far."""
    id: int
    description: dict
    injections: int


@dataclass(frozen=True)
class StoredSite:
    """A fault site of a campaign, as stored (experiments index them)."""
    path: str
    width: int
    fault_class: str


@dataclass(frozen=True)
class ExperimentRecord:
    """One experiment: the upset (site index, bit, tile, cycle in the tile's window) and what
    the RTL did. ``wrong_elements`` and ``max_abs_error`` are ``None`` for a hang;
    ``faulty_tile`` is the observed (valid rows x cols, int32) output when it was wrong."""
    experiment: int
    site: int
    bit: int
    tile: int
    cycle: int
    outcome: str
    wrong_elements: int | None
    max_abs_error: int | None
    done_cycles: int | None
    latent: bool
    faulty_tile: np.ndarray | None = field(default=None, compare=False, repr=False)

    def same_result(self, other):
        """Whether ``other`` (the same upset, run again) did exactly what this one did."""
        fields = ("outcome", "wrong_elements", "max_abs_error", "done_cycles", "latent")
        if any(getattr(self, name) != getattr(other, name) for name in fields):
            return False
        if self.faulty_tile is None or other.faulty_tile is None:
            return self.faulty_tile is None and other.faulty_tile is None
        return np.array_equal(self.faulty_tile, other.faulty_tile)


@dataclass(frozen=True)
class RunRecord:
    """One run of a campaign: when it started, how long it took, what it ran and where."""
    started: float
    seconds: float
    experiments: int
    workers: str


def decode_tile(blob, shape):
    """The faulty output tile stored with an experiment (int32, valid rows x cols)."""
    return np.frombuffer(zlib.decompress(blob), dtype="<i4").reshape(shape)


def _encode_tile(tile):
    return None if tile is None else zlib.compress(
        np.ascontiguousarray(tile, dtype="<i4").tobytes())


def _is_new(path, application_id, user_version, tables):
    """Whether a database holds nothing yet (``False``: it is a campaign database); raise
    :class:`NotACampaignDatabase` if it is another program's."""
    if application_id == APPLICATION_ID:
        if user_version > SCHEMA_VERSION:
            raise NotACampaignDatabase(
                f"{str(path)!r} was written by a newer softerror (schema {user_version}; this "
                f"one reads schema {SCHEMA_VERSION} and older)")
        return False
    if application_id == 0 and user_version == 0 and tables in (set(), _LEGACY_TABLES, _TABLES):
        return not tables    # empty, or written before the header said what it is
    listed = ", ".join(sorted(tables)) or "none"
    raise NotACampaignDatabase(
        f"{str(path)!r} is another program's SQLite database (application_id "
        f"{application_id:#x}, tables: {listed}), not a softerror campaign database")


def _header(db):
    """(application_id, user_version, table names) read through the connection ``db``."""
    application_id = db.execute("PRAGMA application_id").fetchone()[0]
    user_version = db.execute("PRAGMA user_version").fetchone()[0]
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return application_id, user_version, tables


def check_database(path, *, must_exist=False):
    """Raise :class:`NotACampaignDatabase` unless ``path`` is a campaign database, or (unless
    ``must_exist``) a new one could be created there. Writes nothing anywhere."""
    path = Path(path)
    if path.is_dir():
        raise NotACampaignDatabase(f"{str(path)!r} is a directory, not a database file")
    if not path.exists():
        if must_exist:
            raise NotACampaignDatabase(f"{str(path)!r} does not exist")
        if not path.parent.is_dir():
            raise NotACampaignDatabase(f"cannot create {str(path)!r}: no directory "
                                       f"{str(path.parent)!r}")
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise NotACampaignDatabase(f"cannot create {str(path)!r}: directory "
                                       f"{str(path.parent)!r} is not writable")
        return
    try:
        with open(path, "rb") as file:
            header = file.read(100)
    except OSError as error:
        raise NotACampaignDatabase(f"cannot use database {str(path)!r}: "
                                   f"{error.strerror}") from None
    if header[:16] == _SQLITE_MAGIC and header[68:72] == APPLICATION_ID.to_bytes(4, "big"):
        # Ours (the connection checks the schema version); read as bytes, not through
        # SQLite, as a running campaign's checkpoints may be rewriting its pages.
        return
    # Anything else: read its schema. immutable: no locks, no -wal or -shm files, no
    # checkpoint: the file stays as it is.
    uri = f"{path.resolve().as_uri()}?mode=ro&immutable=1"
    try:
        db = sqlite3.connect(uri, uri=True)
        try:
            _is_new(path, *_header(db))
        finally:
            db.close()
    except sqlite3.Error as error:
        raise NotACampaignDatabase(f"cannot use database {str(path)!r}: {error}") from None


def _guarded(method):
    """Turn SQLite's errors in ``method`` into a :class:`DatabaseError` naming the file."""
    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as error:
            raise DatabaseError(f"database {str(self.path)!r}: {error}") from None
    return guarded


class CampaignDatabase:
    """A campaign database, created if ``create`` and missing (else it must exist).

    Opening checks what the file is before writing to it (:func:`check_database`).
    Raises :class:`NotACampaignDatabase` or :class:`DatabaseError`.
    """

    def __init__(self, path, *, create=True):
        self.path = Path(path)
        self._locks = []
        check_database(self.path, must_exist=not create)
        mode = "rwc" if create else "rw"
        try:
            self._db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode={mode}", uri=True,
                                       timeout=BUSY_TIMEOUT)
        except sqlite3.Error as error:
            raise NotACampaignDatabase(f"cannot use database {str(path)!r}: {error}") from None
        try:
            self._initialise(create)
        except BaseException:
            self._db.close()
            raise

    @_guarded
    def _initialise(self, create):
        """Check the header again, now seeing what a running program has not checkpointed;
        if ``create``, write the schema and the header into a new database (or one written
        before the header said what it is), under the write lock."""
        application_id, user_version, tables = _header(self._db)
        if _is_new(self.path, application_id, user_version, tables) and not create:
            raise NotACampaignDatabase(f"{str(self.path)!r} holds no campaign")
        if not create:
            return
        if application_id != APPLICATION_ID:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                application_id, user_version, tables = _header(self._db)
                _is_new(self.path, application_id, user_version, tables)
                if application_id != APPLICATION_ID:
                    # A model experiments' table written before the header is schema 1's.
                    kept = "model_experiments" in tables
                    for statement in _SCHEMA:
                        self._db.execute(statement)
                    self._db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    self._db.execute(f"PRAGMA user_version = {1 if kept else SCHEMA_VERSION}")
        if self._db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            self._upgrade()
        if self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self._db.execute("PRAGMA journal_mode=WAL")

    def _upgrade(self):
        """Schema 1 to 2, under the write lock: the model experiments' table again, its
        operation-level column nullable (SQLite cannot drop a NOT NULL), rows kept."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            if self._db.execute("PRAGMA user_version").fetchone()[0] >= 2:
                return      # another process upgraded it meanwhile
            self._db.execute("ALTER TABLE model_experiments RENAME TO model_experiments_1")
            self._db.execute(_MODEL_EXPERIMENTS_TABLE)
            self._db.execute("INSERT INTO model_experiments SELECT * FROM model_experiments_1")
            self._db.execute("DROP TABLE model_experiments_1")
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self):
        """Close the database and give up the campaigns this object runs."""
        self._db.close()
        while self._locks:
            path, descriptor = self._locks.pop()
            path.unlink(missing_ok=True)    # while locked: a waiting process retries
            os.close(descriptor)

    @_guarded
    def campaign(self, identity, description, sites, injections):
        """The id of the campaign with this identity, created (with its sites) if new, and
        held for this process until :meth:`close` (:class:`CampaignRunning` if another
        process holds it)."""
        key = json.dumps(identity, sort_keys=True)
        campaign_id = self._campaign_id(key)
        if campaign_id is None:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                campaign_id = self._campaign_id(key)
                if campaign_id is None:
                    campaign_id = self._db.execute(
                        "INSERT INTO campaigns (identity, description, injections, created) "
                        "VALUES (?, ?, ?, ?)",
                        (key, json.dumps(description), injections, time.time())).lastrowid
                    self._db.executemany(
                        "INSERT INTO sites VALUES (?, ?, ?, ?, ?)",
                        [(campaign_id, index, site.path, site.width, site.fault_class)
                         for index, site in enumerate(sites)])
        self._hold(campaign_id)    # before writing to a campaign that may be running
        with self._db:
            self._db.execute("UPDATE campaigns SET injections = MAX(injections, ?) "
                             "WHERE id = ?", (injections, campaign_id))
        return campaign_id

    def _campaign_id(self, key):
        row = self._db.execute("SELECT id FROM campaigns WHERE identity = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _hold(self, campaign_id):
        """Take the campaign's lock file, or raise :class:`CampaignRunning`."""
        path = self.path.with_name(f"{self.path.name}.campaign-{campaign_id}.lock")
        while True:
            try:
                descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                raise DatabaseError(f"cannot lock campaign {campaign_id} of "
                                    f"{str(self.path)!r}: {error.strerror}") from None
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip()
                os.close(descriptor)
                raise CampaignRunning(
                    f"campaign {campaign_id} of {str(self.path)!r} is running in another "
                    f"process{f' (pid {holder})' if holder else ''}; wait for it to finish, "
                    "or stop it and run this command again to resume") from None
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(descriptor).st_ino:
                break
            os.close(descriptor)    # its holder removed it as we opened it: take a new one
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        self._locks.append((path, descriptor))

    @_guarded
    def campaign_ids(self):
        return [row[0] for row in self._db.execute("SELECT id FROM campaigns ORDER BY id")]

    @_guarded
    def stored_campaign(self, campaign_id):
        row = self._db.execute("SELECT description, injections FROM campaigns WHERE id = ?",
                               (campaign_id,)).fetchone()
        return StoredCampaign(campaign_id, json.loads(row[0]), row[1])

    @_guarded
    def sites(self, campaign_id):
        """The campaign's sites, in the order experiments index them."""
        return [StoredSite(*row) for row in self._db.execute(
            "SELECT path, width, fault_class FROM sites WHERE campaign_id = ? ORDER BY site",
            (campaign_id,))]

    @_guarded
    def done_experiments(self, campaign_id):
        rows = self._db.execute("SELECT experiment FROM experiments WHERE campaign_id = ?",
                                (campaign_id,))
        return np.fromiter((row[0] for row in rows), dtype=np.int64)

    @_guarded
    def done_model_experiments(self, campaign_id):
        rows = self._db.execute("SELECT experiment FROM model_experiments WHERE campaign_id = ?",
                                (campaign_id,))
        return np.fromiter((row[0] for row in rows), dtype=np.int64)

    @_guarded
    def insert_model_results(self, campaign_id, records):
        """Store one batch of :class:`sim.cosim.record.ModelRecord`."""
        names = [f.name for f in dataclasses.fields(ModelRecord)]
        rows = [(campaign_id, *(getattr(r, name) for name in names)) for r in records]
        with self._db:
            self._db.executemany(f"INSERT INTO model_experiments VALUES "
                                 f"({', '.join('?' * (len(names) + 1))})", rows)

    @_guarded
    def model_records(self, campaign_id):
        """Every stored :class:`ModelRecord` of the campaign, by experiment number."""
        fields = dataclasses.fields(ModelRecord)
        rows = self._db.execute(
            f"SELECT {', '.join(f.name for f in fields)} FROM model_experiments "
            "WHERE campaign_id = ? ORDER BY experiment", (campaign_id,))
        return [ModelRecord(*(bool(value) if f.type in (bool, bool | None)
                              and value is not None else value
                              for f, value in zip(fields, row))) for row in rows]

    @_guarded
    def experiment(self, campaign_id, number, tile_shapes):
        """The stored :class:`ExperimentRecord`, or ``None``; ``tile_shapes[tile]`` is the
        (valid rows, valid cols) of each tile of the workload."""
        row = self._db.execute(
            "SELECT experiment, site, bit, tile, cycle, outcome, wrong_elements, "
            "max_abs_error, done_cycles, latent, faulty_tile FROM experiments "
            "WHERE campaign_id = ? AND experiment = ?", (campaign_id, number)).fetchone()
        if row is None:
            return None
        *fields, latent, blob = row
        return ExperimentRecord(*fields, latent=bool(latent), faulty_tile=None if blob is None
                                else decode_tile(blob, tile_shapes[fields[3]]))

    @_guarded
    def insert_results(self, campaign_id, records):
        """Store one batch of :class:`ExperimentRecord`."""
        rows = [(campaign_id, r.experiment, r.site, r.bit, r.tile, r.cycle, r.outcome,
                 r.wrong_elements, r.max_abs_error, r.done_cycles, int(r.latent),
                 _encode_tile(r.faulty_tile)) for r in records]
        with self._db:
            self._db.executemany("INSERT INTO experiments VALUES "
                                 "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    @_guarded
    def record_run(self, campaign_id, run: RunRecord):
        with self._db:
            self._db.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?)",
                             (campaign_id, run.started, run.seconds, run.experiments,
                              run.workers))

    @_guarded
    def last_run(self, campaign_id):
        """The latest :class:`RunRecord` of the campaign, or ``None``."""
        row = self._db.execute("SELECT started, seconds, experiments, workers FROM runs WHERE "
                               "campaign_id = ? ORDER BY started DESC LIMIT 1",
                               (campaign_id,)).fetchone()
        return None if row is None else RunRecord(*row)

    @_guarded
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

    @_guarded
    def latent_count(self, campaign_id):
        """Experiments whose upset left the control state different from the golden run's."""
        return self._db.execute("SELECT COUNT(*) FROM experiments WHERE campaign_id = ? AND "
                                "latent = 1 AND outcome != 'hang'", (campaign_id,)).fetchone()[0]

    @_guarded
    def late_runs(self, campaign_id, tile_cycles):
        """Experiments whose DONE came after ``tile_cycles``: how many, and the latest."""
        return tuple(self._db.execute(
            "SELECT COUNT(*), MAX(done_cycles) FROM experiments WHERE campaign_id = ? AND "
            "done_cycles > ?", (campaign_id, tile_cycles)).fetchone())

    @_guarded
    def bits_per_class(self, campaign_id):
        bits = dict.fromkeys(FAULT_CLASSES, 0)
        for fault_class, total in self._db.execute(
                "SELECT fault_class, SUM(width) FROM sites WHERE campaign_id = ? "
                "GROUP BY fault_class", (campaign_id,)):
            bits[fault_class] = total
        return bits

    @_guarded
    def export_csv(self, campaign_id, path):
        """One row per experiment, with the site's name and class; returns the row count.

        The file is written whole or not at all (a temporary file beside it, renamed over
        it), so a failure leaves any earlier file as it was; ``OSError`` if it cannot be.
        """
        path = Path(path)
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        rows = self._db.execute(
            "SELECT e.experiment, s.path, s.fault_class, e.bit, e.tile, e.cycle, e.outcome, "
            "e.wrong_elements, e.max_abs_error, e.done_cycles, e.latent FROM experiments e "
            "JOIN sites s "
            "ON s.campaign_id = e.campaign_id AND s.site = e.site WHERE e.campaign_id = ? "
            "ORDER BY e.experiment", (campaign_id,))
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        count = 0
        try:
            with open(temporary, "w", newline="") as file:
                writer = csv.writer(file)
                writer.writerow(["experiment", "site", "class", "bit", "tile", "cycle",
                                 "outcome", "wrong_elements", "max_abs_error", "done_cycles",
                                 "latent"])
                for row in rows:
                    writer.writerow(row)
                    count += 1
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        return count
