"""Fault-injection campaigns on a nonlinear unit's registers, judged row by row.

``softerror campaign-nonlinear`` builds a small accelerator (a 2x2 array) with one unit
(:data:`hw.config.NONLINEAR_UNITS`), with or without its checkers, and draws a workload
from the seed: the unit's parameters and a few rows of ``length`` elements
(:func:`sim.verify_nonlinear.unit_parameters`, :func:`~sim.verify_nonlinear.nonlinear_rows`),
each row's golden codes and flags from the twin (:func:`~sim.verify_nonlinear.twin_rows`).
Its fault sites are every register of the unit's class (the unit's own registers, its
checkers', its divider's: :mod:`hw.netlist.fault_sites`).

Experiment ``i`` is a pure function of the seed and ``i``
(``numpy.random.default_rng([seed, 3, i])``; streams 1 and 2 of the seed drew the
parameters and rows): a row, a flip-flop bit uniformly over the unit's bits and a cycle
uniformly over the row's ``1 .. latency(n)`` (after the ``c``-th edge of the row, the
START edge the first: the cycles of ``SoftmaxUnit.stage_cycle``). The host then reads
what a driver reads (:mod:`sim.testbenches.unit_campaign`) and the row's outcome is

* ``masked``: the codes are the golden ones and no FLAG;
* ``sdc``: the codes differ, no FLAG;
* ``detected``: the codes differ and FLAG (the host recomputes the row);
* ``false_alarm``: the codes are the golden ones, FLAG;
* ``hang``: no DONE by the row's watchdog (:func:`unit_watchdog`);

(:func:`sim.campaign.outcomes.classify`; a unit corrects nothing). Every record keeps the
ERROR bit too (a START the unit refused). All experiments run on one simulator session.

Co-verification under faults: where the flipped register is one of the twin's stages
(``stage_registers``) in the cycle the unit's ``stage_cycle`` says it holds that stage's
value, the twin with the same bit flipped through its hook predicts the row's codes and
flags; :meth:`UnitCampaign.predict` gives that prediction and every campaign checks it
for the experiments that qualify (``twin_check`` in the summary).
"""

import bisect
import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from hw.config import MAX_NONLINEAR_LENGTH, NONLINEAR_UNITS, AcceleratorConfig
from hw.nonlinear.units import timing_unit, unit_latency
from hw.register_map import UNIT_CHECKS, UNIT_FLAGS_SHIFT, UnitStatus
from hw.validation import check_int
from sim.build import build_design
from sim.campaign.messages import UnitExperiment, UnitSessionSetup
from sim.campaign.outcomes import classify
from sim.campaign.statistics import wilson_interval
from sim.simulator import SimulatorSession
from sim.verify_nonlinear import nonlinear_rows, twin_rows, unit_parameters

__all__ = ["run_unit_campaign", "UnitCampaign", "UnitRecord", "UNIT_OUTCOMES",
           "unit_watchdog", "DEFAULT_ROWS", "GoldenMismatch", "UpsetTwin", "status_flags"]

TESTBENCH = "sim.testbenches.unit_campaign"
#: The outcomes of a unit's row, in reporting order (a unit corrects nothing).
UNIT_OUTCOMES = ("masked", "detected", "sdc", "false_alarm", "hang")
#: Rows of the workload unless told otherwise.
DEFAULT_ROWS = 8
#: Experiments per message to the simulator (a progress step).
BATCH = 50
#: The seed's random stream of the experiments (1 and 2 draw the parameters and rows).
_EXPERIMENT_STREAM = 3
#: The array beside the unit: the smallest, its registers are no sites of the campaign.
_ARRAY = {"rows": 2, "cols": 2, "k_max": 16}


class GoldenMismatch(RuntimeError):
    """A row without an upset did not give the twin's codes and flags at the latency:
    the campaign would judge against the wrong reference, so it does not start."""


def unit_watchdog(unit, length, n):
    """Edges after START within which DONE must come, or the row is a ``hang``.

    A stated bound, chosen so that a row one upset delays but does not stop is never a
    hang: ``2 latency(n) + 2 latency(length) + 64``. One upset can

    * raise the unit's copy of the row length (``bitlen(length)`` bits, so below
      ``2 length``): the row then runs as one of fewer than ``2 length`` elements, within
      ``2 latency(length)``;
    * send the state machine back (to an earlier pass, or to a new row): at most one more
      row, ``latency(n)``;
    * push a pass's or the divider's counter back: less than a pass (``n + 4`` edges)
      more, or up to its width's range, well inside the 64-edge margin at the lengths
      a campaign takes.

    Past the bound the unit sits in a state with no exit (an unused state encoding) or
    waits for something that never comes.
    """
    return 2 * unit_latency(unit, length, n) + 2 * unit_latency(unit, length, length) + 64


@dataclass(frozen=True)
class UnitRecord:
    """One experiment's row as the host read it, and its outcome.

    ``wrong`` and ``max_abs_error``: codes that differ from the golden row and the
    largest difference (``None`` for a hang). ``flags``: the checker flags in STATUS, in
    the order of :data:`hw.register_map.UNIT_CHECKS`. ``late``: DONE came after the
    latency but before the watchdog. ``error``: the STATUS ERROR bit.
    """
    experiment: int
    row: int
    site: str
    bit: int
    cycle: int
    outcome: str
    codes: tuple
    flags: tuple
    wrong: int | None
    max_abs_error: int | None
    error: bool
    late: bool


def _check_options(unit, length, checkers, seed, rows):
    if not isinstance(unit, str) or unit not in NONLINEAR_UNITS:
        raise TypeError(f"unit must be one of {', '.join(NONLINEAR_UNITS)}, not {unit!r}")
    check_int("length", length, 1, max(MAX_NONLINEAR_LENGTH.values()))
    if length > MAX_NONLINEAR_LENGTH[unit]:
        raise ValueError(f"length must be at most {MAX_NONLINEAR_LENGTH[unit]} for the "
                         f"{unit} unit, not {length}")
    if not isinstance(checkers, bool):
        raise TypeError(f"checkers must be True or False, not {checkers!r}")
    check_int("seed", seed, 0, 2**63 - 1)
    check_int("rows", rows, 1, 10_000)
    try:
        unit_latency(unit, length, 1)
    except ImportError:
        raise ValueError(f"unit {unit!r}: this tree has no {unit} hardware yet "
                         "(hw/nonlinear)") from None


class UnitCampaign:
    """The design, workload, sites and experiments of one unit's campaign, and the
    simulator that runs them (opened by :meth:`open` or ``with``).

    Raises ``TypeError`` or ``ValueError`` naming the parameter for a bad option.
    """

    def __init__(self, unit, *, length, checkers, seed, rows=DEFAULT_ROWS, watchdog=None):
        _check_options(unit, length, checkers, seed, rows)
        if watchdog is not None:
            check_int("watchdog", watchdog, 1, 2**31 - 1)
        self.unit, self.length, self.checkers, self.seed = unit, length, checkers, seed
        self.config = AcceleratorConfig(**_ARRAY, nonlinear=(unit,), nonlinear_length=length,
                                        nonlinear_checkers=checkers)
        self.params, self.csrs, self.tables = unit_parameters(unit, length, seed, length)
        self.rows = nonlinear_rows(unit, length, rows, seed, elements=length)
        self.golden = twin_rows(unit, [self.params] * len(self.rows), self.rows)
        self.latency = [unit_latency(unit, length, len(row)) for row in self.rows]
        self.watchdog = [max(watchdog or unit_watchdog(unit, length, len(row)),
                             latency + len(row) + 2)
                         for row, latency in zip(self.rows, self.latency)]
        self.build = build_design(self.config)
        self.sites = [site for site in self.build.fault_sites() if site.fault_class == unit]
        self._starts = np.cumsum([0] + [site.width for site in self.sites]).tolist()
        self._twin = UpsetTwin(unit, length, checkers)
        self._session = None

    @property
    def bits(self):
        """Flip-flop bits of the unit: the campaign's sites, all together."""
        return self._starts[-1]

    def experiment(self, index):
        """Experiment ``index``: a pure function of the seed and ``index``."""
        rng = np.random.default_rng([self.seed, _EXPERIMENT_STREAM, index])
        row = int(rng.integers(len(self.rows)))
        flat = int(rng.integers(self.bits))
        cycle = int(rng.integers(1, self.latency[row] + 1))
        site = bisect.bisect_right(self._starts, flat) - 1
        return UnitExperiment(index, row, site, flat - self._starts[site], cycle)

    # -- the simulator -----------------------------------------------------------------

    def open(self):
        """Start the simulator and check each row's golden run against the twin."""
        if self._session is not None:
            return self
        session = SimulatorSession(self.build, TESTBENCH)
        try:
            ready = session.request(UnitSessionSetup(
                self.config, self.unit, self.csrs, self.tables,
                tuple(site.path for site in self.sites),
                tuple(tuple(row) for row in self.rows), tuple(self.latency),
                tuple(self.watchdog)))
            for number, run in enumerate(ready.golden):
                codes, flags = self.golden[number]
                expected = (list(codes), flags if self.checkers else [False] * len(flags),
                            self.latency[number])
                seen = (list(run.codes), self._flags(run.status), run.done_cycles)
                if seen != expected:
                    raise GoldenMismatch(
                        f"the golden run of row {number} disagrees with the twin: RTL "
                        f"(codes, flags, DONE cycle) {seen}, twin {expected}")
        except BaseException:
            session.kill()
            raise
        self._session = session
        return self

    def close(self):
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc_info):
        if exc_info[0] is None:
            self.close()
        elif self._session is not None:
            self._session.kill()
            self._session = None

    def run(self, experiments):
        """The :class:`UnitRecord` s of ``experiments`` (:class:`UnitExperiment` s), in
        order, on the simulator."""
        self.open()
        runs = self._session.request(tuple(experiments))
        return [self._record(experiment, run) for experiment, run in zip(experiments, runs)]

    def _flags(self, status):
        return status_flags(self.unit, status)

    def _record(self, experiment, run):
        golden = self.golden[experiment.row][0]
        hang = run.done_cycles is None
        errors = [abs(code - expected) for code, expected in zip(run.codes, golden)]
        wrong = None if hang else sum(error != 0 for error in errors)
        outcome = classify(hang=hang, output_wrong=bool(wrong),
                           alarm=bool(run.status >> UnitStatus.FLAG & 1))
        return UnitRecord(experiment.experiment, experiment.row,
                          self.sites[experiment.site].path, experiment.bit, experiment.cycle,
                          outcome, run.codes, tuple(self._flags(run.status)), wrong,
                          None if hang else max(errors), bool(run.status >> UnitStatus.ERROR & 1),
                          run.late)

    # -- the twin under the same upset ---------------------------------------------------

    def predict(self, experiment):
        """The twin's (codes, flags) of ``experiment``'s row with the same bit flipped
        (:meth:`UpsetTwin.predict`), or ``None``."""
        return self._twin.predict(self.params, self.rows[experiment.row],
                                  self.sites[experiment.site].path, experiment.bit,
                                  experiment.cycle)

    # -- the summary ---------------------------------------------------------------------

    def summarize(self, records, seconds):
        """The campaign's summary (see :func:`run_unit_campaign`)."""
        counts = {outcome: 0 for outcome in UNIT_OUTCOMES}
        per_register = {site.path: {"bits": site.width, "injections": 0,
                                    **{outcome: 0 for outcome in UNIT_OUTCOMES}}
                        for site in self.sites}
        raised = dict.fromkeys(UNIT_CHECKS[self.unit], 0)
        for record in records:
            counts[record.outcome] += 1
            per_register[record.site][record.outcome] += 1
            per_register[record.site]["injections"] += 1
            for check, flag in zip(raised, record.flags):
                raised[check] += flag
        total = len(records)
        corrupting = counts["detected"] + counts["sdc"]
        return {
            "unit": self.unit, "length": self.length, "checkers": self.checkers,
            "seed": self.seed, "design": self.config.label, "parameters": self.csrs,
            "rows": len(self.rows), "row_elements": [len(row) for row in self.rows],
            "latency": self.latency, "watchdog": self.watchdog,
            "registers": len(self.sites), "bits": self.bits,
            "population": self.bits * sum(self.latency),
            "injections": total, "outcomes": counts,
            "rates": {outcome: _rate(count, total) for outcome, count in counts.items()},
            "sdc_rate": _rate(counts["sdc"], total),
            "sdc_bits": {"value": self.bits * counts["sdc"] / total if total else None,
                         "ci95": [self.bits * bound
                                  for bound in wilson_interval(counts["sdc"], total)]},
            "coverage": {**_rate(counts["detected"], corrupting), "corrupting": corrupting},
            "false_alarm_rate": _rate(counts["false_alarm"], total),
            "errors": sum(record.error for record in records),
            "late": sum(record.late for record in records),
            "checker_flags": raised,
            "per_register": per_register,
            "twin_check": self.twin_check(records),
            "seconds": seconds,
            "injections_per_second": total / seconds if seconds > 0 else None,
        }

    def twin_check(self, records):
        """How many experiments the twin predicts (:meth:`predict`) and how many of those
        the RTL did exactly (codes, flags, DONE at the latency); the first that differs."""
        predicted = agree = 0
        first = None
        for record in records:
            experiment = UnitExperiment(record.experiment, record.row,
                                        self._site_index(record.site), record.bit,
                                        record.cycle)
            prediction = self.predict(experiment)
            if prediction is None:
                continue
            predicted += 1
            seen = (list(record.codes), list(record.flags), record.outcome != "hang"
                    and not record.late)
            if seen == (prediction[0], prediction[1], True):
                agree += 1
            elif first is None:
                first = {"experiment": dataclasses.asdict(record),
                         "twin": {"codes": prediction[0], "flags": prediction[1]}}
        return {"experiments": predicted, "agree": agree, "first_disagreement": first}

    def _site_index(self, path):
        return next(index for index, site in enumerate(self.sites) if site.path == path)


def status_flags(unit, status):
    """The checker flags of ``unit`` in a STATUS word, in the order of
    :data:`hw.register_map.UNIT_CHECKS`."""
    return [bool(status >> (UNIT_FLAGS_SHIFT + check) & 1)
            for check in range(len(UNIT_CHECKS[unit]))]


class UpsetTwin:
    """The twin of a unit under one register upset, where the twin can say: the flipped
    register holds one of the twin's stages (the unit's ``stage_registers``) in the cycle
    its ``stage_cycle`` says. A stage register's site is ``<unit>.<path>``, the path its
    unit's ``stage_paths`` gives (a register of a submodule, as the GELU's divider's
    ``quotient``), else the register's name."""

    def __init__(self, unit, length, checkers):
        self.unit, self.checkers = unit, checkers
        self._hardware = hardware = timing_unit(unit, length, checkers)
        registers = getattr(hardware, "stage_registers", {})
        paths = getattr(hardware, "stage_paths", {})
        self._stages = {f"{unit}.{paths.get(stage, register.name)}": stage
                        for stage, register in registers.items()}

    def predict(self, params, row, path, bit, cycle):
        """The twin's (codes, flags) of ``row`` under ``params`` with bit ``bit`` of the
        register ``path`` flipped after the ``cycle``-th edge, if it holds a stage then;
        else ``None``. Flags are all ``False`` without checkers, as the host reads them."""
        stage = self._stages.get(path)
        if stage is None:
            return None
        index = self._stage_index(len(row), stage, cycle)
        if index is None:
            return None

        def hook(name, values):
            if name != stage:
                return values
            values = values.clone()
            flat = values.view(-1)
            flat[index] = int(flat[index]) ^ (1 << bit)
            return values

        [(codes, flags)] = twin_rows(self.unit, [params], [row], hook=hook)
        return codes, flags if self.checkers else [False] * len(flags)

    def _stage_index(self, n, stage, cycle):
        """The element whose ``stage`` value the register holds in ``cycle``, or ``None``."""
        for index in range(n):
            try:
                if self._hardware.stage_cycle(n, stage, index) == cycle:
                    return index
            except TypeError:       # a per-row stage has element 0 only
                return None
        return None


def _rate(count, total):
    """A count's share of ``total`` with its 95% Wilson interval (rate ``None`` of 0)."""
    return {"count": count, "rate": count / total if total else None,
            "ci95": list(wilson_interval(count, total))}


def run_unit_campaign(unit, *, length, checkers, injections, seed, rows=DEFAULT_ROWS,
                      progress=None):
    """Experiments ``0 .. injections - 1`` on ``unit``'s registers; the summary dict.

    ``unit`` is one of :data:`hw.config.NONLINEAR_UNITS`, ``length`` its longest row (and
    the workload rows' length), ``checkers`` whether it has its checkers, ``rows`` the
    workload's rows; ``progress(done, total)`` is called as experiments finish.

    The summary: ``injections``, ``outcomes`` (counts of :data:`UNIT_OUTCOMES`),
    ``rates`` (each with its 95% Wilson interval ``ci95``), ``sdc_rate``, ``sdc_bits``
    (the SDC rate times the unit's bits: its SDC cross-section in flip-flops, what compares
    designs with and without checkers, which differ in bits), ``coverage``
    (detected / (detected + sdc)), ``false_alarm_rate``, ``errors`` (ERROR read),
    ``late`` (DONE after the latency), ``checker_flags`` (experiments that raised each
    flag), ``per_register`` (bits, injections and outcome counts of each site),
    ``twin_check`` (:meth:`UnitCampaign.twin_check`), ``seconds`` and
    ``injections_per_second`` (the experiments only: not the build, nor the golden runs),
    and the campaign's description (design, parameters, rows, latency, watchdog, bits,
    population of (bit, cycle) pairs).

    Raises
    ------
    TypeError, ValueError
        A bad option, named.
    """
    check_int("injections", injections, 1, 10**9)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable or None, not {progress!r}")
    campaign = UnitCampaign(unit, length=length, checkers=checkers, seed=seed, rows=rows)
    records, seconds = [], 0.0
    with campaign:
        for first in range(0, injections, BATCH):
            batch = [campaign.experiment(index)
                     for index in range(first, min(first + BATCH, injections))]
            started = time.perf_counter()
            records += campaign.run(batch)
            seconds += time.perf_counter() - started
            if progress is not None:
                progress(len(records), injections)
    return campaign.summarize(records, seconds)
