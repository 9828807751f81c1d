"""Model-level campaigns on the nonlinear units: upsets in the softmax, GELU and LayerNorm
hardware while it runs the integer ViT's rows, carried through the rest of the inference.

The workload is what the ViT feeds its units (``QuantizedViT(nonlinear="int")``, its units
as long as the design's ``nonlinear_length``): every row of every softmax, GELU and
LayerNorm call of an inference, in order (:class:`RowSlot`), with the unit's parameters of
that call. Every image has the same rows; only their values differ.

Experiment ``i`` is a pure function of the seed and ``i``: an image of the chosen test
images; a (row, flip-flop bit) pair uniformly over the bit-cycles the chosen units spend
on the inference, that is a row with probability proportional to its latency times its
unit's bits (of the chosen site classes), then a bit of that unit; and a cycle ``1 ..
latency`` of the row (after the ``c``-th edge, the START edge the first, as
:mod:`sim.nonlinear_campaign` counts). An upset while a unit is idle is not drawn: the
host rewrites every parameter before each row.

The struck row runs on the RTL (:mod:`sim.testbenches.unit_campaign`). The row without an
upset must give the ViT's own clean codes, no flag, DONE at the latency (co-verification
on the rows the real model feeds the units; a difference stops the campaign:
:class:`~sim.nonlinear_campaign.GoldenMismatch`); an upset run that already shows exactly
that stands for it, else the row runs once more without the upset. Host policy: a checker FLAG or
a hang make the host recompute the row (its result is then the clean one); otherwise the
codes the host read replace the row in the unit's output (:class:`RowSplice`) and the
twin runs the rest of the inference, batched as GEMM experiments are
(:meth:`ModelCampaign.judge`).

The cross-checks of GEMM campaigns have their counterparts here: the twin under the same
upset (:class:`~sim.nonlinear_campaign.UpsetTwin`, for a register that holds a twin stage
in that cycle; ``not_modeled`` otherwise) against the RTL's codes and flags, and the
paper's operation-level model: one bit of one int8 output code of the same call.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from itertools import product

import numpy as np
import torch

from hw.accelerator import GemmAccelerator
from hw.config import NONLINEAR_UNITS
from hw.netlist.fault_sites import enumerate_fault_sites
from hw.nonlinear.units import unit_latency
from hw.register_map import UnitStatus
from sim.cosim.engine import (
    ModelCampaign,
    bounded_cache,
    draw_bit,
    draw_index,
    load_workload,
)
from sim.cosim.record import StruckTile, Upset
from sim.cosim.splice import RowSplice
from sw.datapath import Datapath

__all__ = ["RowSlot", "UnitModelCampaign", "record_unit_calls", "row_slots"]

TESTBENCH = "sim.testbenches.unit_campaign"


@dataclass(frozen=True)
class RowSlot:
    """One row of one nonlinear call of an inference: what a unit runs between two STARTs."""
    site: str
    """The call's ``Site`` name (``"blocks.0.attn.softmax"``)."""
    unit: str
    index: tuple
    """The row's position among the call's leading dimensions after the batch."""
    n: int
    cycles: int
    """The row's latency on the unit: its injection window."""


class _CallRecorder(Datapath):
    def __init__(self):
        self.calls = {}

    def nonlinear(self, site, stage, values):
        if site.integer and stage in ("input", "output"):
            if values.shape[0] != 1:
                raise ValueError(f"record one image at a time, not a batch of {values.shape[0]}")
            self.calls.setdefault(site.name, {"kind": site.kind})[stage] = values[0].clone()
        return values


def record_unit_calls(quantized, image):
    """``{site: {"kind", "input", "output"}}`` of the integer ViT's nonlinear calls on one
    image (C, H, W), in the order the inference runs them: each call's input rows and
    clean output codes (int64, the call's leading dimensions, rows on the last axis)."""
    recorder = _CallRecorder()
    quantized(image[None], recorder)
    return recorder.calls


def row_slots(calls, length, units):
    """The :class:`RowSlot` s of ``calls`` (:func:`record_unit_calls`) that run on one of
    ``units``, each unit ``length`` long, in run order."""
    slots = []
    for site, call in calls.items():
        if call["kind"] not in units:
            continue
        values = call["input"]
        n = values.shape[-1]
        latency = unit_latency(call["kind"], length, n)
        slots += [RowSlot(site, call["kind"], index, n, latency)
                  for index in product(*map(range, values.shape[:-1]))]
    return slots


@dataclass
class UnitModelCampaign(ModelCampaign):
    """A prepared model-level campaign on the nonlinear units (``passes`` are the
    inference's :class:`RowSlot` s)."""
    _calls: dict = field(default_factory=dict)

    @classmethod
    def prepare(cls, options):
        """Load the integer ViT and data, enumerate the units' sites and rows; raise on
        bad options."""
        from sim.nonlinear_campaign import UpsetTwin
        config = options.config
        classes = options.classes
        for fault_class in classes:
            if fault_class not in NONLINEAR_UNITS:
                raise TypeError(f"sites: the units' classes ({', '.join(NONLINEAR_UNITS)}) "
                                f"are struck by themselves, not with {fault_class!r}")
            if fault_class not in config.nonlinear:
                raise ValueError(f"sites: the design has no {fault_class} unit (add it with "
                                 f"--nonlinear)")
        if options.model != "vit":
            raise ValueError(f"sites: the {options.model} runs no softmax, GELU or "
                             f"LayerNorm (use --model vit)")
        if options.engine != "rtl":
            raise ValueError("the twin engine models GEMM upsets only: use --engine rtl "
                             "for the units")
        if options.modules is not None:
            raise ValueError("modules: the units' rows are chosen with --sites")
        all_sites = enumerate_fault_sites(GemmAccelerator(config))
        sites = [site for site in all_sites if site.fault_class in classes]
        quantized, split, chosen = load_workload(options)
        campaign = cls(options, quantized, split.test_images, split.test_labels, chosen,
                       [], sites, all_sites)
        campaign._units = {unit: [site for site in sites if site.fault_class == unit]
                           for unit in classes}
        campaign._unit_starts = {unit: np.cumsum([site.width for site in unit_sites]).tolist()
                                 for unit, unit_sites in campaign._units.items()}
        campaign._twins = {unit: UpsetTwin(unit, config.nonlinear_length,
                                           config.nonlinear_checkers) for unit in classes}
        campaign.passes = row_slots(campaign.calls(int(chosen[0])), config.nonlinear_length,
                                    classes)
        weights = [slot.cycles * campaign.unit_bits[slot.unit] for slot in campaign.passes]
        campaign._cumulative_weight = np.cumsum(weights).tolist()
        campaign._cumulative_cycles = np.cumsum([slot.cycles for slot in campaign.passes]).tolist()
        campaign._cumulative_bits = np.cumsum([site.width for site in sites]).tolist()
        return campaign

    @property
    def unit_bits(self):
        """Flip-flop bits of each chosen unit."""
        return {unit: int(starts[-1]) for unit, starts in self._unit_starts.items()}

    @property
    def bit_cycles(self):
        """(flip-flop bit, cycle) pairs of the chosen units over one inference."""
        return int(self._cumulative_weight[-1])

    def description(self):
        per_unit = defaultdict(lambda: {"rows": 0, "cycles": 0})
        for slot in self.passes:
            per_unit[slot.unit]["rows"] += 1
            per_unit[slot.unit]["cycles"] += slot.cycles
        return {"rows": len(self.passes), "inference_cycles": self.total_cycles,
                "bits": self.total_bits, "bit_cycles": self.bit_cycles,
                "units": {unit: {**per_unit[unit], "bits": bits}
                          for unit, bits in self.unit_bits.items()},
                "images_used": self.chosen.tolist()}

    def calls(self, image):
        return bounded_cache(self._calls, image, 64,
                             lambda: record_unit_calls(self.quantized, self.images[image]))

    def draw(self, experiment):
        """The :class:`Upset` of experiment number ``experiment`` (``pass_index``: the
        row's index among :attr:`passes`)."""
        rng = np.random.default_rng([self.options.seed, experiment])
        image = int(self.chosen[rng.integers(len(self.chosen))])
        slot_index = draw_index(rng, self._cumulative_weight)
        slot = self.passes[slot_index]
        site, bit = draw_bit(rng, self._units[slot.unit], self._unit_starts[slot.unit])
        cycle = int(rng.integers(1, slot.cycles + 1))
        return Upset(experiment, image, slot_index, site.path, site.fault_class, bit, cycle)

    def row(self, upset):
        """(slot, parameters, input row, clean output codes) of the struck row."""
        slot = self.passes[upset.pass_index]
        call = self.calls(upset.image)[slot.site]
        return (slot, self.quantized.units[slot.site], call["input"][slot.index],
                call["output"][slot.index])

    def struck_place(self, upset):
        slot, _, _, clean = self.row(upset)
        return clean, slot.unit, slot.site + "".join(f"[{i}]" for i in slot.index)

    def splice(self, upset, output):
        slot = self.passes[upset.pass_index]
        return RowSplice(slot.site, slot.index, output.to(torch.int64))

    def operation_level_splice(self, upset):
        """One bit of one int8 output code of the struck call, drawn from the seed."""
        slot = self.passes[upset.pass_index]
        output = self.calls(upset.image)[slot.site]["output"]
        rng = np.random.default_rng([self.options.seed, upset.experiment, 1])
        index = tuple(int(rng.integers(size)) for size in output.shape[:-1])
        element, bit = int(rng.integers(output.shape[-1])), int(rng.integers(8))
        code = int(output[index][element]) & 0xFF ^ (1 << bit)
        return RowSplice(slot.site, index, torch.tensor(code - 256 if code > 127 else code),
                         element)

    def predict(self, upset):
        """The twin's :class:`StruckTile` for ``upset`` (codes, any flag), or ``None``."""
        slot, params, values, _ = self.row(upset)
        predicted = self._twins[slot.unit].predict(params, values.tolist(), upset.site,
                                                   upset.bit, upset.cycle)
        if predicted is None:
            return None
        codes, flags = predicted
        return StruckTile(torch.tensor(codes, dtype=torch.int64), range_flag=any(flags))

    def run(self, experiments):
        return self._run(experiments, self._strike_rtl)

    def _strike_rtl(self, upsets):
        """The :class:`StruckTile` of each upset (the codes as int64, FLAG as
        ``range_flag``) from the unit testbench on Verilator, one task per struck row,
        one round trip per chunk; checks each row's golden run against the ViT."""
        from sim.build import build_design
        from sim.campaign.messages import UnitExperiment, UnitRowSetup, UnitRowTask
        from sim.campaign.worker import open_session, thread_session
        from sim.nonlinear_campaign import GoldenMismatch, status_flags, unit_watchdog
        from sim.verify_nonlinear import unit_registers
        config = self.options.config
        length = config.nonlinear_length
        paths = tuple(site.path for site in self.sites)
        index = {path: number for number, path in enumerate(paths)}
        by_row = defaultdict(list)
        for number, upset in enumerate(upsets):
            by_row[upset.image, upset.pass_index].append(number)
        tasks, keys = [], []
        for key, numbers in sorted(by_row.items()):
            slot, params, values, clean = self.row(upsets[numbers[0]])
            csrs, tables = unit_registers(slot.unit, params)
            tasks.append(UnitRowTask(
                slot.unit, csrs, tables, tuple(values.tolist()), slot.cycles,
                max(unit_watchdog(slot.unit, length, slot.n), slot.cycles + slot.n + 2),
                tuple(UnitExperiment(number, 0, index[upsets[number].site],
                                     upsets[number].bit, upsets[number].cycle)
                      for number in numbers), expected=tuple(clean.tolist())))
            keys.append(numbers[0])
        session = thread_session(("units", config, paths), lambda: open_session(
            build_design(config), TESTBENCH, UnitRowSetup(config, paths)))
        struck = [None] * len(upsets)
        for task, first, result in zip(tasks, keys, session.request(tuple(tasks))):
            slot, _, _, clean = self.row(upsets[first])
            golden = result.golden
            seen = (list(golden.codes), status_flags(slot.unit, golden.status),
                    golden.done_cycles)
            expected = (clean.tolist(), [False] * len(seen[1]), slot.cycles)
            if seen != expected:
                raise GoldenMismatch(
                    f"image {upsets[first].image}, {slot.site}{list(slot.index)}: the unit "
                    f"without an upset gave (codes, flags, DONE cycle) {seen}, the ViT "
                    f"{expected}")
            for run in result.runs:
                if run.done_cycles is None:
                    struck[run.experiment] = StruckTile(None, hang=True)
                    continue
                struck[run.experiment] = StruckTile(
                    torch.tensor(run.codes, dtype=torch.int64),
                    range_flag=bool(run.status >> UnitStatus.FLAG & 1))
        return struck
