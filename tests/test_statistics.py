import pytest

from sim.campaign.statistics import leveugle_sample_size, margin_of_error, wilson_interval


def test_wilson_interval_known_values():
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson_interval(30, 100)
    assert (low, high) == (pytest.approx(0.2189, abs=1e-4), pytest.approx(0.3958, abs=1e-4))
    assert wilson_interval(5, 0) == (0.0, 1.0)


def test_leveugle_sample_size_tends_to_the_infinite_population_value():
    # t = 1.96, e = 1%, p = 0.5: n = t^2 p (1 - p) / e^2 = 9604 for an infinite population.
    assert leveugle_sample_size(10**12, 0.01) == 9604
    assert leveugle_sample_size(560_951, 0.01) == 9443
    assert leveugle_sample_size(100, 0.01) == 99      # nearly the whole population
    assert leveugle_sample_size(0, 0.01) == 0


def test_margin_of_error_inverts_the_sample_size():
    population = 560_951
    n = leveugle_sample_size(population, 0.02)
    assert margin_of_error(n, population) == pytest.approx(0.02, abs=1e-4)
    assert margin_of_error(population, population) == 0.0
    assert margin_of_error(0, population) == 1.0
