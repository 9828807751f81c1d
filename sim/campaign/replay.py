"""Replay: run an experiment of a stored campaign again on the RTL, to compare and to look at.

The campaign's description holds everything that decided its experiments (design,
workload, seed, range bounds), so one experiment can be re-run alone, with a waveform if
asked, and set beside its stored record.
"""

import dataclasses
from dataclasses import dataclass

from hw.config import AcceleratorConfig
from sim.campaign.engine import CampaignOptions, prepare_campaign, replay
from sim.campaign.store import ExperimentRecord, StoredSite
from sim.campaign.workload import Workload
from sw.twin.protection import RangeBounds

__all__ = ["Replay", "replay_experiment"]


@dataclass(frozen=True)
class Replay:
    """A stored experiment run again: the stored record, what the RTL did now, and whether
    the design's Verilog differs from the campaign's."""
    campaign_id: int
    site: StoredSite
    stored: ExperimentRecord
    replayed: ExperimentRecord
    design_changed: bool

    @property
    def agrees(self):
        return self.stored.same_result(self.replayed)


def _stored_options(campaign):
    """The :class:`CampaignOptions` a stored campaign ran with."""
    description = campaign.description
    bounds = description["range_bounds"]
    try:
        return CampaignOptions(
            config=AcceleratorConfig(**description["design"]),
            workload=Workload(**description["workload"]), seed=description["seed"],
            classes=tuple(description["classes"]),
            exhaustive_cycle=description["exhaustive_cycle"],
            range_bounds=None if bounds is None else RangeBounds(**bounds))
    except TypeError as error:
        raise ValueError(f"campaign {campaign.id} was run on a design this version cannot "
                         f"build: {error}") from None


def replay_experiment(database, campaign_id, number, *, waves_file=None):
    """Run experiment ``number`` of a stored campaign again on the RTL (a :class:`Replay`).

    Raises ``ValueError`` if the campaign holds no such experiment or the design no
    longer has its site.
    """
    campaign = database.stored_campaign(campaign_id)
    options = _stored_options(campaign)
    tiles = options.workload.tiles(options.config.rows, options.config.cols, options.bounds)
    stored = database.experiment(campaign_id, number,
                                 [(tile.valid_rows, tile.valid_cols) for tile in tiles])
    if stored is None:
        done = database.done_experiments(campaign_id)
        held = f"its {len(done)} are numbered from {done.min()} to {done.max()}" if len(done) \
            else "it holds none"
        raise ValueError(f"--experiment: campaign {campaign_id} has no experiment {number} "
                         f"({held})")
    site = database.sites(campaign_id)[stored.site]
    prepared = prepare_campaign(options)
    if site.path not in {present.path for present in prepared.sites}:
        raise ValueError(f"the design has changed since campaign {campaign_id} ran: it has no "
                         f"site {site.path!r} any more")
    [replayed] = replay(options, [(site.path, stored.bit, stored.tile, stored.cycle)],
                        waves_file=waves_file)
    return Replay(campaign_id, site, stored,
                  dataclasses.replace(replayed, experiment=number, site=stored.site),
                  design_changed=prepared.identity["design_verilog_sha256"]
                  != campaign.description["design_verilog_sha256"])
