"""Model-level campaigns: upsets in the accelerator running the real ViT or CNN.

An experiment is a pure function of the seed and its index: an image of the chosen test
images, a tile pass of that image's inference with probability proportional to its cycles,
a flip-flop bit with probability proportional to nothing but being one (uniform over the
bits of the chosen site classes) and a cycle of the pass's window. The struck pass runs on
the RTL (``engine="rtl"``) or is predicted by the RTL-derived fault model
(:mod:`sw.twin.upset`, ``engine="twin"``); the host policy decides what the alarms cost;
the tile the host keeps is spliced into the inference (:mod:`sim.cosim.splice`), and the
twin runs the rest of it from the image's clean pass, batched over a chunk's experiments.
On the RTL, the twin's work on one part of a chunk overlaps the simulation of the next
(:meth:`ModelCampaign.run_rtl`).

Host policy: ABFT_ERROR without ABFT_CORRECTED, a RANGE_FLAG or a hang make the host
recompute the pass (its result is then the clean one); a corrected tile is kept.

Range checker: on a design with one, the host programs each GEMM's bounds before its
passes, symmetric, at :data:`~sim.cosim.workload.RANGE_MARGIN` times the largest |partial
tile value| the first :data:`~sim.cosim.workload.CALIBRATION_IMAGES` training images
produce at that GEMM, widened (and counted) where a chosen test image goes beyond, so
that no clean pass raises the flag.
"""

from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from hw.accelerator import GemmAccelerator
from hw.config import NONLINEAR_UNITS, AcceleratorConfig
from hw.netlist.fault_sites import FAULT_CLASSES, enumerate_fault_sites
from sim.cosim.record import ModelRecord, StruckTile, Upset
from sim.cosim.splice import CleanPrefix, SpliceDatapath, TileSplice
from sim.cosim.workload import (
    CALIBRATION_IMAGES,
    RANGE_MARGIN,
    pass_extremes,
    record_gemms,
    tile_passes,
)
from sw.datapath import Datapath
from sw.twin.gemm import to_signed
from sw.twin.protection import RangeBounds, product_raw
from sw.twin.upset import MODELED_CLASSES, predict_upset

__all__ = ["ModelCampaignOptions", "ModelCampaign", "classify_model", "load_workload",
           "GEMM_CLASSES", "bounded_cache", "draw_index", "draw_bit"]

ENGINES = ("rtl", "twin")
#: The fault classes of the GEMM datapath (the units' classes are named after the units).
GEMM_CLASSES = tuple(c for c in FAULT_CLASSES if c not in NONLINEAR_UNITS)
#: Experiments whose inferences the twin finishes in one batch (about twice as many rows).
JUDGE_BATCH = 256
#: Experiments per message to the simulator in the RTL engine (:meth:`ModelCampaign.run_rtl`):
#: small enough that the twin's work on one part overlaps the simulation of the next.
PIPELINE_PART = 128
#: Images whose clean pass (every GEMM output, the logits) a campaign keeps (about 80 KB
#: each for the shipped ViTs).
CLEAN_PASSES = 512


@dataclass(frozen=True)
class ModelCampaignOptions:
    """Everything that decides a model-level campaign's experiments."""
    config: AcceleratorConfig
    model: str = "vit"
    dataset: str = "digits"
    images: int | None = 32
    """How many test images (a seeded choice), or ``None`` for all of them."""
    seed: int = 0
    modules: tuple | None = None
    """Module kinds to strike (``qkv``, ``fc2``, ...); ``None``: every GEMM."""
    classes: tuple | None = None
    """Fault-site classes to strike; ``None``: every class (the twin: the modeled ones)."""
    engine: str = "rtl"
    operation_level: bool | None = None
    """Whether every experiment also runs the paper's operation-level model (one more
    inference each); ``None``: the RTL engine does (the cross-check of the hardware), the
    twin engine does not."""

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise TypeError(f"engine must be one of {', '.join(map(repr, ENGINES))}, "
                            f"not {self.engine!r}")
        if self.operation_level is None:
            object.__setattr__(self, "operation_level", self.engine == "rtl")
        elif not isinstance(self.operation_level, bool):
            raise TypeError(f"operation_level must be True or False, not "
                            f"{self.operation_level!r}")


def bounded_cache(cache, key, limit, compute):
    """``cache[key]``, computed by ``compute()`` if missing; a cache of ``limit`` entries
    is emptied first (what a campaign keeps per image or pass stays bounded)."""
    if key not in cache:
        if len(cache) >= limit:
            cache.clear()
        cache[key] = compute()
    return cache[key]


def draw_index(rng, cumulative):
    """An index drawn with probability proportional to its weight (``cumulative``: the
    running sum of the weights, a list)."""
    return bisect_right(cumulative, int(rng.integers(cumulative[-1])))


def draw_bit(rng, sites, cumulative):
    """(site, bit) uniformly over the bits of ``sites`` (``cumulative``: the running sum
    of their widths, a list)."""
    number = int(rng.integers(cumulative[-1]))
    index = bisect_right(cumulative, number)
    site = sites[index]
    return site, number - (cumulative[index] - site.width)


def load_workload(options):
    """(quantized model, data split, chosen test image indices) of ``options``: on a design
    with nonlinear units the ViT runs its softmax, GELU and LayerNorm on them (the integer
    ViT, its units as long as the design's)."""
    from sw.analysis.vulnerability import quantized_model
    from sw.models.datasets import load_dataset
    integer = options.model == "vit" and bool(options.config.nonlinear)
    try:
        _, quantized = quantized_model(
            options.model, options.dataset, nonlinear="int" if integer else "float",
            unit_length=options.config.nonlinear_length if integer else None)
    except ValueError as error:
        raise ValueError(f"nonlinear_length: {error}") from None
    split = load_dataset(options.dataset)
    count = len(split.test_images)
    if options.images is not None and not 1 <= options.images <= count:
        raise TypeError(f"images must be from 1 to {count} (the test set), "
                        f"not {options.images!r}")
    chosen = (np.arange(count) if options.images is None else np.sort(
        np.random.default_rng(options.seed).choice(count, options.images, replace=False)))
    return quantized, split, chosen


def classify_model(struck, clean, top1_changed):
    """(action, outcome) of an experiment from the struck tile, the clean tile and whether
    the kept tile changed the top-1 class (ignored when the tile is recomputed or equal)."""
    if struck.hang:
        return "recompute", "hang"
    equal = torch.equal(struck.output, clean)
    if struck.range_flag or (struck.abft_error and not struck.abft_corrected):
        return "recompute", "false_alarm" if equal else "recomputed"
    if struck.abft_error and equal:
        return "keep", "corrected"
    if equal:
        return "keep", "masked"
    return "keep", "sdc" if top1_changed else "tolerated"


class _OutputRecorder(Datapath):
    def __init__(self):
        self.outputs = {}

    def gemm(self, site, a, b):
        result = super().gemm(site, a, b)
        self.outputs[site.name] = result[0]
        return result


def _margin(logits, label):
    others = logits.clone()
    others[..., label] = float("-inf")
    return logits[..., label] - others.max(-1).values


@dataclass
class ModelCampaign:
    """A prepared model-level campaign: the model, its images, passes and fault sites."""
    options: ModelCampaignOptions
    quantized: object
    images: torch.Tensor
    labels: torch.Tensor
    chosen: np.ndarray
    passes: list
    sites: list
    """The sites upsets are drawn from (of the chosen classes)."""
    design_sites: list
    """Every fault site of the design (the simulator resolves them all)."""
    bounds: dict = field(default_factory=dict)
    """Range checker bounds (:class:`RangeBounds`) per GEMM site, on a design with one."""
    widened_bounds: int = 0
    """GEMM sites whose bounds were widened for a chosen test image."""
    _gemms: dict = field(default_factory=dict)
    _passes: dict = field(default_factory=dict)
    _clean: dict = field(default_factory=dict)
    _verdicts: dict = field(default_factory=dict)

    @classmethod
    def prepare(cls, options):
        """Load the model and data, enumerate sites and passes; raise on bad options."""
        all_sites = enumerate_fault_sites(GemmAccelerator(options.config))
        default = MODELED_CLASSES if options.engine == "twin" else GEMM_CLASSES
        classes = options.classes or default
        for fault_class in classes:
            if fault_class not in GEMM_CLASSES:
                raise TypeError(f"sites must be among {', '.join(GEMM_CLASSES)} for GEMM "
                                f"upsets, not {fault_class!r}")
            if options.engine == "twin" and fault_class not in MODELED_CLASSES:
                raise ValueError(f"the twin engine models {', '.join(MODELED_CLASSES)}, "
                                 f"not {fault_class!r}: use --engine rtl")
        sites = [site for site in all_sites if site.fault_class in classes]
        if not sites:
            raise ValueError(f"the design has no {'/'.join(classes)} site")
        quantized, split, chosen = load_workload(options)
        campaign = cls(options, quantized, split.test_images, split.test_labels, chosen,
                       [], sites, all_sites)
        if options.config.range_check:
            campaign._profile_bounds(split.train_images[:CALIBRATION_IMAGES])
        gemms = campaign.gemms(int(chosen[0]))
        modules = sorted({gemm.module for gemm in gemms})
        for module in options.modules or ():
            if module not in modules:
                raise TypeError(f"modules must be among {', '.join(modules)}, not {module!r}")
        campaign.passes = [p for p in tile_passes(gemms, options.config)
                           if options.modules is None or gemms[p.gemm].module in options.modules]
        if not campaign.passes:
            raise ValueError("no GEMM of the model is among the chosen modules")
        campaign._cumulative_cycles = np.cumsum([p.cycles for p in campaign.passes]).tolist()
        campaign._cumulative_bits = np.cumsum([site.width for site in sites]).tolist()
        return campaign

    def description(self):
        """What the campaign database records about the workload beside the identity."""
        module_cycles = defaultdict(int)
        gemms = self.gemms(int(self.chosen[0]))
        for tile_pass in self.passes:
            module_cycles[gemms[tile_pass.gemm].module] += tile_pass.cycles
        description = {"passes": len(self.passes), "inference_cycles": self.total_cycles,
                       "bits": self.total_bits, "module_cycles": dict(module_cycles),
                       "images_used": self.chosen.tolist()}
        if self.bounds:
            description["range_bounds"] = {site: bounds.upper
                                           for site, bounds in self.bounds.items()}
            description["range_bounds_widened"] = self.widened_bounds
        return description

    def _profile_bounds(self, calibration):
        k_max = self.options.config.k_max
        calibrated = pass_extremes(self.quantized, calibration, k_max)
        tested = pass_extremes(self.quantized, self.images[self.chosen], k_max)
        for site, largest in calibrated.items():
            bound = min(RANGE_MARGIN * max(largest, 1), 2**31 - 1)
            if tested[site] > bound:
                bound = tested[site]
                self.widened_bounds += 1
            self.bounds[site] = RangeBounds(-bound, bound)

    @property
    def total_cycles(self):
        """Cycles the accelerator spends on the chosen passes of one inference."""
        return int(self._cumulative_cycles[-1])

    @property
    def total_bits(self):
        return int(self._cumulative_bits[-1])

    def run(self, experiments):
        """:class:`ModelRecord` s of ``experiments`` (indices) with the campaign's engine."""
        if self.options.engine == "twin":
            return self.run_twin(experiments)
        return self.run_rtl(experiments)

    def gemms(self, image):
        return bounded_cache(self._gemms, image, 64,
                             lambda: record_gemms(self.quantized, self.images[image]))

    def draw(self, experiment):
        """The :class:`Upset` of experiment number ``experiment``."""
        rng = np.random.default_rng([self.options.seed, experiment])
        image = int(self.chosen[rng.integers(len(self.chosen))])
        pass_index = draw_index(rng, self._cumulative_cycles)
        site, bit = draw_bit(rng, self.sites, self._cumulative_bits)
        cycle = int(rng.integers(self.passes[pass_index].cycles))
        return Upset(experiment, image, pass_index, site.path, site.fault_class, bit, cycle)

    def pass_operands(self, upset):
        """(gemm, pass, a, b): the struck pass's operands (int8 NumPy arrays), padded to
        the array."""
        return self._pass(upset)[:4]

    def clean_tile(self, upset):
        """The struck pass's clean tile (an int32 tensor, padded to the array)."""
        return self._pass(upset)[4]

    def _pass(self, upset):
        def operands():
            tile_pass = self.passes[upset.pass_index]
            gemm = self.gemms(upset.image)[tile_pass.gemm]
            a, b = tile_pass.operands(gemm, self.options.config.rows, self.options.config.cols)
            product = product_raw(a, b)
            return gemm, tile_pass, a, b, torch.from_numpy(product.astype(np.int32)), product

        return bounded_cache(self._passes, (upset.image, upset.pass_index), 4096, operands)

    def predict(self, upset):
        """The RTL-derived model's :class:`StruckTile` for ``upset``, or ``None``."""
        gemm, tile_pass, a, b, _, clean = self._pass(upset)
        view = predict_upset(self.options.config, a, b, upset.site, upset.bit, upset.cycle,
                             self.bounds.get(gemm.site), clean=clean)
        if view is None:
            return None
        return StruckTile(view.output[:tile_pass.valid_rows, :tile_pass.valid_cols],
                          view.abft_error, view.abft_corrected, view.range_flag)

    def judge(self, upsets, struck_tiles, predictions, operation_level_sdc):
        """:class:`ModelRecord` s of experiments from the tiles the host read: the rest of
        every inference that kept a wrong tile runs in the twin, in one batch, each from
        its image's clean pass; ``predictions`` and ``operation_level_sdc`` are the fault
        models' verdicts (:func:`prediction_verdict`, :meth:`operation_level`)."""
        splices, clean_tiles, places, equal = [], [], [], []
        for upset, struck in zip(upsets, struck_tiles):
            clean, module, label = self.struck_place(upset)
            clean_tiles.append(clean)
            places.append((module, label))
            equal.append(struck.output is not None and torch.equal(struck.output, clean))
            recompute = struck.hang or struck.range_flag or (struck.abft_error
                                                             and not struck.abft_corrected)
            splices.append(None if recompute or equal[-1]
                           else self.splice(upset, struck.output))
        # One row per kept wrong tile: an equal or recomputed tile leaves the clean logits.
        spliced = [number for number, splice in enumerate(splices) if splice is not None]
        logits = self.finish([upsets[number].image for number in spliced],
                             [splices[number] for number in spliced])
        experiment_row = {number: row for row, number in enumerate(spliced)}
        records = []
        for number, (upset, struck, prediction) in enumerate(zip(upsets, struck_tiles,
                                                                 predictions)):
            image = upset.image
            label, clean_top1, clean_margin = self._clean_verdict(image)
            module, place = places[number]
            row = experiment_row.get(number)
            top1 = clean_top1 if row is None else int(logits[row].argmax())
            action, outcome = classify_model(struck, clean_tiles[number], top1 != clean_top1)
            kept_clean = action == "recompute" or splices[number] is None
            records.append(ModelRecord(
                experiment=upset.experiment, image=image, module=module, gemm_site=place,
                pass_index=upset.pass_index, site=upset.site, fault_class=upset.fault_class,
                bit=upset.bit, cycle=upset.cycle, tile_equal=equal[number],
                action=action, outcome=outcome, label=label, clean_top1=clean_top1,
                top1=clean_top1 if kept_clean else top1,
                margin_change=0.0 if kept_clean else float(
                    _margin(logits[row], label) - clean_margin),
                predicted=prediction, operation_level_sdc=operation_level_sdc[number]))
        return records

    def _clean_verdict(self, image):
        """(label, clean top-1 class, clean logit margin of the label) of test image
        ``image``."""
        def verdict():
            logits = self.clean_pass(image)[1]
            label = int(self.labels[image])
            return label, int(logits.argmax()), _margin(logits, label)

        return bounded_cache(self._verdicts, image, CLEAN_PASSES, verdict)

    def finish(self, images, splices):
        """Logits of the inferences of test images ``images`` (a list), each with its
        splice, each run from its image's clean pass; ``None`` for no image."""
        if not images:
            return None
        return self.quantized(self.images[images], SpliceDatapath(
            splices, CleanPrefix(self._order, [self.clean_pass(image)[0] for image in images])))

    def operation_level(self, upsets):
        """Per upset, whether the operation-level model's flip in its GEMM
        (:meth:`operation_level_splice`) changes the top-1 class, in one batch; ``None``
        each when the campaign does not run that model."""
        if not self.options.operation_level:
            return [None] * len(upsets)
        images = [upset.image for upset in upsets]
        logits = self.finish(images, [self.operation_level_splice(u) for u in upsets])
        return [int(row.argmax()) != self._clean_verdict(image)[1]
                for row, image in zip(logits, images)]

    def clean_pass(self, image):
        """(GEMM outputs by site without the batch axis, logits) of the clean inference
        of test image ``image``, kept for the images of the campaign."""
        def run():
            outputs = _OutputRecorder()
            logits = self.quantized(self.images[image][None], outputs)[0]
            return outputs.outputs, logits

        return bounded_cache(self._clean, image, CLEAN_PASSES, run)

    @cached_property
    def _simulator_sites(self):
        """(every site's path, the control sites' paths, site number by path, the step
        counter's width): what the simulator is told of the design's sites."""
        from sim.campaign.outcomes import step_width
        paths = tuple(site.path for site in self.design_sites)
        control = tuple(site.path for site in self.design_sites if site.fault_class == "control")
        return (paths, control, {path: number for number, path in enumerate(paths)},
                step_width(self.design_sites))

    @cached_property
    def _order(self):
        return {site.name: place for place, site in enumerate(self.quantized.sites)}

    def struck_place(self, upset):
        """(clean tile of the struck pass, valid part; module; GEMM label) of ``upset``."""
        gemm, tile_pass, _, _ = self.pass_operands(upset)
        clean = self.clean_tile(upset)[:tile_pass.valid_rows, :tile_pass.valid_cols]
        return clean, gemm.module, gemm.site + "".join(f"[{i}]" for i in gemm.index)

    def splice(self, upset, output):
        """The :class:`TileSplice` that puts the tile ``output`` (valid part) the host kept
        in place of the struck pass's clean one."""
        gemm, tile_pass, _, _ = self.pass_operands(upset)
        clean, _, _ = self.struck_place(upset)
        return TileSplice(gemm.site, gemm.index, tile_pass.row0, tile_pass.col0,
                          output.to(torch.int64) - clean.to(torch.int64))

    def operation_level_splice(self, upset):
        """One bit of one int32 output element of the struck GEMM, drawn from the seed."""
        gemm = self.gemms(upset.image)[self.passes[upset.pass_index].gemm]
        rng = np.random.default_rng([self.options.seed, upset.experiment, 1])
        m, n = gemm.a.shape[0], gemm.b.shape[1]
        row, col, bit = int(rng.integers(m)), int(rng.integers(n)), int(rng.integers(32))
        value = int(self.clean_pass(upset.image)[0][gemm.site].numpy()[(*gemm.index, row, col)])
        flipped = to_signed((value & 0xFFFFFFFF) ^ (1 << bit), 32)
        return TileSplice(gemm.site, gemm.index, row, col,
                          torch.tensor([[flipped - value]], dtype=torch.int64))

    def run_twin(self, experiments):
        """Records of ``experiments`` (indices) with the twin engine."""
        return self._run(experiments, lambda upsets: [self.predict(u) for u in upsets],
                         twin=True)

    def run_rtl(self, experiments):
        """Records of ``experiments`` (indices) with the struck passes run on the RTL, each
        also predicted by the RTL-derived fault model (the cross-check).

        The passes go to the simulator in parts of about :data:`PIPELINE_PART`
        experiments; while it runs one part (in its own process) the twin predicts that
        part's tiles, runs its operation-level flips and finishes the previous part's
        inferences."""
        from sim.campaign.worker import close_sessions, submit_batches
        upsets = [self.draw(number) for number in experiments]
        parts = self._rtl_parts(upsets)
        records, previous = [], None
        ready = self._rtl_tasks(upsets, parts[0]) if parts else None  # the next part's tasks
        for number, part_passes in enumerate(parts):
            part = [upsets[upset] for _, numbers in part_passes for upset in numbers]
            tasks, shapes = ready
            collect = submit_batches(tasks)
            try:
                predicted = [self.predict(upset) for upset in part]
                operation_level = self.operation_level(part)
                if previous is not None:
                    records += self.judge(*previous)
                if number + 1 < len(parts):
                    ready = self._rtl_tasks(upsets, parts[number + 1])
            except BaseException:
                close_sessions(kill=True)   # it is mid-part: nobody would read its answer
                raise
            struck = self._struck_tiles(collect, shapes, len(part))
            previous = (part, struck, [prediction_verdict(p, tile)
                                       for p, tile in zip(predicted, struck)], operation_level)
        if previous is not None:
            records += self.judge(*previous)
        return sorted(records, key=lambda record: record.experiment)

    def _rtl_parts(self, upsets):
        """The struck passes in load order (the passes of one GEMM column band and K range,
        of every image, one after the other: a weight tile stays in its buffer for all of
        them), cut into parts of about :data:`PIPELINE_PART` experiments: per part, a list
        of ((image, pass index), numbers of its upsets)."""
        by_pass = defaultdict(list)
        for number, upset in enumerate(upsets):
            by_pass[upset.image, upset.pass_index].append(number)

        def load_order(key):
            image, pass_index = key
            tile_pass = self.passes[pass_index]
            return tile_pass.gemm, tile_pass.col0, tile_pass.k0, image, tile_pass.row0

        parts, size = [], PIPELINE_PART
        for key in sorted(by_pass, key=load_order):
            if size >= PIPELINE_PART:
                parts.append([])
                size = 0
            parts[-1].append((key, by_pass[key]))
            size += len(by_pass[key])
        return parts

    def _rtl_tasks(self, upsets, part_passes):
        """(batch tasks, (clean tile, valid rows, valid cols) per task) of one part: a task
        per struck pass carrying its operands, its experiments numbered in the part."""
        from sim.campaign.messages import BatchTask, Experiment
        from sim.campaign.outcomes import watchdog_cycles
        from sim.campaign.workload import TileData
        config = self.options.config
        site_paths, control_paths, index, step_width = self._simulator_sites
        tasks, shapes, numbered = [], [], 0
        for (image, pass_index), numbers in part_passes:
            upset = upsets[numbers[0]]
            gemm, tile_pass, a, b = self.pass_operands(upset)
            clean = self.clean_tile(upset)
            bounds = self.bounds.get(gemm.site)
            tile = TileData.of(
                f"{self.options.model}/image {image}/pass {pass_index}/{bounds!r}",
                pass_index, a, b, tile_pass.valid_rows, tile_pass.valid_cols, clean, bounds)
            experiments = tuple(Experiment(numbered + place, index[upsets[number].site],
                                           upsets[number].bit, upsets[number].cycle)
                                for place, number in enumerate(numbers))
            numbered += len(numbers)
            tasks.append(BatchTask(config, site_paths, control_paths, tile,
                                   watchdog_cycles(config.tile_cycles(tile_pass.k), step_width),
                                   experiments, golden_on_demand=True))
            shapes.append((clean, tile_pass.valid_rows, tile_pass.valid_cols))
        return tasks, shapes

    def _struck_tiles(self, collect, shapes, count):
        """The :class:`StruckTile` of each of a part's ``count`` experiments, from the
        simulator's results (``collect()``) for its tasks' ``shapes``."""
        from hw.register_map import Status
        config = self.options.config
        struck = [None] * count
        for batch, (clean, rows, cols) in zip(collect(), shapes):
            for result in batch.results:
                if result.outcome == "hang":
                    struck[result.experiment] = StruckTile(None, hang=True)
                    continue
                output = clean if result.observed is None else torch.frombuffer(
                    bytearray(result.observed), dtype=torch.int32).reshape(config.rows,
                                                                           config.cols)
                struck[result.experiment] = StruckTile(
                    output[:rows, :cols].clone(),
                    abft_error=bool(result.status >> Status.ABFT_ERROR & 1),
                    abft_corrected=bool(result.status >> Status.ABFT_CORRECTED & 1),
                    range_flag=bool(result.status >> Status.RANGE_FLAG & 1))
        return struck

    def _run(self, experiments, strike, twin=False):
        """Records of ``experiments``, their struck tiles from ``strike(upsets)`` (``twin``:
        the predictions themselves), judged in batches of :data:`JUDGE_BATCH`."""
        upsets = [self.draw(number) for number in experiments]
        struck = strike(upsets)
        if twin:
            predictions = ["equal"] * len(upsets)
        else:
            predictions = [prediction_verdict(self.predict(upset), tile)
                           for upset, tile in zip(upsets, struck)]
        records = []
        for start in range(0, len(upsets), JUDGE_BATCH):
            part = slice(start, start + JUDGE_BATCH)
            records += self.judge(upsets[part], struck[part], predictions[part],
                                  self.operation_level(upsets[part]))
        return sorted(records, key=lambda record: record.experiment)


def prediction_verdict(predicted, struck):
    """The RTL-derived model's prediction against the tile the host read: ``not_modeled``
    (no prediction), ``equal`` or ``mismatch``."""
    if predicted is None:
        return "not_modeled"
    return "equal" if _same(predicted, struck) else "mismatch"


def _same(predicted, struck):
    return (not struck.hang and torch.equal(predicted.output, struck.output)
            and (predicted.abft_error, predicted.abft_corrected, predicted.range_flag)
            == (struck.abft_error, struck.abft_corrected, struck.range_flag))
