"""Co-verification of the nonlinear units: random rows on the RTL and the twin, bit for bit.

``softerror verify nonlinear`` builds the accelerator with one unit, drives each row through
the host port (parameters and per-channel tables, row, START, STATUS until DONE, the codes
back, the checker flags and counters) in :mod:`sim.testbenches.nonlinear`, and compares
everything with ``sw.twin.nonlinear``. Rows are drawn from the seed: every length from 1 to ``length``
comes first (as many as the row count allows), a tenth of the rows are extremes, the rest
random.
"""

import tempfile
from pathlib import Path

import numpy as np
import torch

from hw.config import AcceleratorConfig
from hw.nonlinear.units import unit_latency
from hw.register_map import UNIT_COUNT_BITS
from sim.build import build_design
from sim.simulator import run_testbench

__all__ = ["nonlinear_rows", "unit_parameters", "unit_registers", "verify_nonlinear", "twin_rows"]

TESTBENCH = "sim.testbenches.nonlinear"


def unit_parameters(unit, length, seed, n):
    """(twin parameters, CSR values by port name, per-channel tables) of ``unit`` for rows
    of ``n`` elements, drawn from ``seed`` (softmax and GELU: the same for every ``n``)."""
    rng = np.random.default_rng([seed, 1])
    if unit == "softmax":
        from sw.twin.nonlinear.softmax import SoftmaxParams
        params = SoftmaxParams.for_scale(float(10 ** rng.uniform(-4, -1)), length)
        return (params, *unit_registers(unit, params))
    if unit == "gelu":
        from sw.twin.nonlinear.gelu import GeluParams
        params = GeluParams.for_scale(float(10 ** rng.uniform(-2.5, -0.5)), length)
        return (params, *unit_registers(unit, params))
    from sw.twin.nonlinear.layernorm import LayerNormParams
    weight, bias = rng.uniform(0.2, 2.0, length), rng.uniform(-1.0, 1.0, length)
    input_scale, output_scale = float(10 ** rng.uniform(-4, -2)), float(rng.uniform(0.02, 0.1))
    params = LayerNormParams.for_affine(weight[:n], bias[:n], input_scale, output_scale,
                                        length, eps=1e-5)
    return (params, *unit_registers(unit, params))


def unit_registers(unit, params):
    """(CSR values by port name, per-channel tables by window) that program ``unit`` with
    the twin's ``params``, as a driver writes them (docs/register-map.md)."""
    if unit == "layernorm":
        return ({"out_shift": params.shift, "epsilon": params.eps_term},
                {"gain": list(params.gain), "offset": list(params.offset)})
    return {"scale_m": params.multiplier, "scale_shift": params.shift}, {}


def nonlinear_rows(unit, length, count, seed, elements=None):
    """``count`` rows (lists of ints) for ``unit``: every length first, a tenth extremes;
    rows of ``elements`` elements each if it is given."""
    rng = np.random.default_rng([seed, 2])
    low, high = {"softmax": (-(1 << 31), (1 << 31) - 1), "gelu": (-128, 127),
                 "layernorm": (-(1 << 15), (1 << 15) - 1)}[unit]
    rows = []
    extremes = max(1, count // 10)
    for number in range(count):
        if elements is not None:
            n = elements
        else:
            n = number + 1 if number < length else int(rng.integers(1, length + 1))
        if number >= count - extremes:
            kind = number % 4
            if kind == 0:
                row = [high] * n
            elif kind == 1:
                row = [low] * n
            elif kind == 2:
                row = [low] * n
                row[int(rng.integers(n))] = high
            else:
                row = rng.choice([low, 0, high], n).tolist()
        elif unit != "gelu":
            spread = int(10 ** rng.uniform(0, np.log10(high)))
            row = rng.integers(-spread, spread + 1, n).tolist()
        else:
            row = rng.integers(low, high + 1, n).tolist()
        rows.append([int(value) for value in row])
    return rows


def twin_rows(unit, parameters, rows, hook=None):
    """The twin's (codes, flags) per row; ``parameters[i]`` are row i's; ``hook`` is the
    twin's (it sees each row's stages, one row at a time)."""
    from sw.twin.nonlinear.gelu import check_gelu, gelu
    from sw.twin.nonlinear.layernorm import check_layernorm, layernorm
    from sw.twin.nonlinear.softmax import check_softmax, softmax
    run, check = {"softmax": (softmax, check_softmax), "gelu": (gelu, check_gelu),
                  "layernorm": (layernorm, check_layernorm)}[unit]
    results = []
    for params, row in zip(parameters, rows):
        trace = run(torch.tensor([row], dtype=torch.int64), params, hook=hook)
        flags = check(trace, params)
        results.append((trace.output[0].tolist(),
                        [bool(getattr(flags, name)[0]) for name in flags.names]))
    return results


def verify_nonlinear(unit, *, length=64, rows=100, seed=0, design=None, waves_file=None):
    """Run ``rows`` random rows through ``unit`` on the RTL and the twin; the report dict
    (``bit_exact``, ``unit``, ``rows``, ``length``, ``cycles``, ``flags``, ...)."""
    config = AcceleratorConfig(**{**(design or {"rows": 2, "cols": 2, "k_max": 16}),
                                  "nonlinear": (unit,), "nonlinear_length": length})
    drawn = nonlinear_rows(unit, length, rows, seed)
    # Drawn once per row length (the LayerNorm's tables depend on it; the others do not).
    by_length = {n: unit_parameters(unit, length, seed, n) for n in {len(row) for row in drawn}}
    parameters = [by_length[len(row)] for row in drawn]
    expected = twin_rows(unit, [params for params, _, _ in parameters], drawn)
    waves = None if waves_file is None else Path(waves_file).suffix[1:]
    build = build_design(config, waves=waves)
    request = {"design": vars(config), "unit": unit, "rows": [
        {"values": row, "csrs": csrs, "tables": tables, "latency": unit_latency(unit, length,
                                                                                len(row))}
        for row, (_, csrs, tables) in zip(drawn, parameters)]}
    with tempfile.TemporaryDirectory(prefix="softerror-verify-") as work:
        response = run_testbench(build, TESTBENCH, request, Path(work), waves_file=waves_file)
    mismatches = []
    raised = [0] * len(expected[0][1])
    for number, ((codes, flags), result) in enumerate(zip(expected, response["rows"])):
        for check, flag in enumerate(flags):
            raised[check] += flag
        latency = request["rows"][number]["latency"]
        if result["codes"] != codes or result["flags"] != flags or result["cycles"] != latency:
            mismatches.append({"row": number, "n": len(codes), "rtl": result,
                               "twin": {"codes": codes, "flags": flags, "cycles": latency}})
    saturated = (1 << UNIT_COUNT_BITS) - 1
    counters_ok = response["counts"] == [min(count, saturated) for count in raised]
    return {"bit_exact": not mismatches and counters_ok, "unit": unit, "rows": rows,
            "length": length, "cycles": sum(r["cycles"] for r in response["rows"]),
            "flags": sum(map(sum, (flags for _, flags in expected))),
            "counters_ok": counters_ok, "mismatches": len(mismatches),
            "first_mismatch": mismatches[0] if mismatches else None,
            "design": config.label}
