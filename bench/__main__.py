"""Run every benchmark and print its figures: ``python -m bench`` (``make bench``)."""

from bench import simulation_speed
from sim.build import DesignConfig


def main():
    print(simulation_speed.report(simulation_speed.measure(DesignConfig(rows=8, cols=8,
                                                                        k_max=256))))


if __name__ == "__main__":
    main()
