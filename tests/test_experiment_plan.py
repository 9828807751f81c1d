import numpy as np
import pytest

from sim.campaign.plan import exhaustive_plan, random_plan


def test_an_experiment_depends_only_on_seed_and_index():
    whole = random_plan(7, [8, 32, 1, 5], 300, np.arange(1000))
    part = random_plan(7, [8, 32, 1, 5], 300, np.array([999, 3, 500]))
    for name in ("site", "bit", "cycle"):
        assert getattr(part, name).tolist() == getattr(whole, name)[[999, 3, 500]].tolist()
    other = random_plan(8, [8, 32, 1, 5], 300, np.arange(1000))
    assert not np.array_equal(other.site, whole.site)


def test_bits_and_cycles_are_in_range():
    widths = [8, 32, 1, 5]
    plan = random_plan(1, widths, 97, np.arange(20000))
    assert plan.bit.min() == 0
    assert all(plan.bit[plan.site == s].max() == widths[s] - 1 for s in range(4))
    assert plan.cycle.min() == 0 and plan.cycle.max() == 96


def test_sampling_is_uniform_over_bits_not_registers():
    widths = np.array([8, 32, 1, 5])
    plan = random_plan(3, widths, 10, np.arange(46000))
    counts = np.bincount(plan.site, minlength=4)
    expected = 46000 * widths / widths.sum()
    chi_square = ((counts - expected) ** 2 / expected).sum()
    assert chi_square < 16.3          # 99.9% quantile with 3 degrees of freedom
    cycles = np.bincount(plan.cycle, minlength=10)
    assert ((cycles - 4600) ** 2 / 4600).sum() < 27.9   # 9 degrees of freedom


def test_exhaustive_plan_visits_every_bit_once():
    plan = exhaustive_plan([3, 2], 17, np.arange(5))
    assert list(zip(plan.site.tolist(), plan.bit.tolist())) == [(0, 0), (0, 1), (0, 2), (1, 0),
                                                                 (1, 1)]
    assert set(plan.cycle.tolist()) == {17}


def test_select_keeps_arrays_parallel():
    plan = random_plan(0, [4], 4, np.arange(10))
    chosen = plan.select(plan.experiment % 2 == 0)
    assert chosen.experiment.tolist() == [0, 2, 4, 6, 8]
    assert chosen.bit.tolist() == plan.bit[::2].tolist()


@pytest.mark.parametrize("seed", [0, 2**63 - 1])
def test_extreme_seeds(seed):
    assert len(random_plan(seed, [1], 1, np.arange(3))) == 3
