"""Run every benchmark and print its figures: ``python -m bench`` (``make bench``)."""

from bench import (
    campaign_speed,
    cluster_sampling,
    model_campaign_speed,
    simulation_speed,
    software_injection_speed,
)
from hw.config import AcceleratorConfig


def main():
    print(simulation_speed.report(simulation_speed.measure(AcceleratorConfig(rows=8, cols=8,
                                                                        k_max=256))))
    print()
    print(campaign_speed.report(campaign_speed.measure()))
    print()
    for design in model_campaign_speed.measure_designs():
        print(model_campaign_speed.report(design))
    print(cluster_sampling.report(cluster_sampling.measure()))
    print()
    print(software_injection_speed.report(software_injection_speed.measure()))


if __name__ == "__main__":
    main()
