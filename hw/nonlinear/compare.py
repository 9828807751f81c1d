"""The checkers' comparators: a chain of multiplexers instead of a subtractor.

``a < b`` decided from the lowest bit up: where ``a`` and ``b`` differ, the higher bit
decides (``b``'s bit: 1 means ``b`` is larger), where they agree the lower bits' verdict
passes through. One XOR and one multiplexer per bit, against a subtractor's carry chain
(about a third of the cells in the units' Yosys count, docs/nonlinear-hardware.md); the
chain is as long as a ripple carry, which the checkers, registered once per element,
afford.
"""

from amaranth.hdl import Cat, Const, Mux, Value

__all__ = ["at_most", "less_than"]


def _extended(value, width):
    pad = width - len(value)
    if not pad:
        return value
    fill = value[-1] if value.shape().signed else Const(0, 1)
    return Cat(value, fill.replicate(pad))


def _chain(a, b, equal):
    a, b = Value.cast(a), Value.cast(b)
    signed = a.shape().signed or b.shape().signed
    width = max(len(a) + (signed and not a.shape().signed),
                len(b) + (signed and not b.shape().signed))
    a, b = _extended(a, width), _extended(b, width)
    verdict = Const(int(equal), 1)
    for i in range(width):
        # A signed top bit is the sign: where they differ, a is the smaller if it is set.
        larger = a[i] if signed and i == width - 1 else b[i]
        verdict = Mux(a[i] ^ b[i], larger, verdict)
    return verdict


def less_than(a, b):
    """``a < b`` of two values of any widths and signedness (both compared as integers)."""
    return _chain(a, b, equal=False)


def at_most(a, b):
    """``a <= b`` of two values of any widths and signedness (both compared as integers)."""
    return _chain(a, b, equal=True)
