"""Integer access to simulator signals, for the campaign's hot path.

cocotb's value API turns every read into a ``LogicArray`` (built by parsing a binary
string) and every write into a value object, a few microseconds each; an experiment makes
about eight accesses. :class:`RawSignal` reads and writes through the GPI handle underneath
a cocotb handle with the rules cocotb itself applies (integers up to 32 bits, binary
strings beyond) and cocotb's own write actions. It relies on cocotb internals, which is
why cocotb is pinned; ``tests/test_campaign.py`` checks that an upset written this way
lands and is overwritten like one written through the public API.
"""

from cocotb.handle import _GPISetAction

__all__ = ["RawSignal", "resolve"]


def resolve(root, path):
    """The handle at dotted ``path`` below ``root`` (a netlist path of a fault site)."""
    handle = root
    for part in path.split("."):
        handle = getattr(handle, part)
    return handle


class RawSignal:
    """Unsigned integer view of a logic-vector signal."""

    def __init__(self, handle):
        self.handle = handle
        self.width = len(handle)
        self._gpi = handle._handle
        self._narrow = self.width <= 32
        self._mask = (1 << self.width) - 1

    def read(self):
        if self._narrow:
            return self._gpi.get_signal_val_long() & self._mask
        return int(self._gpi.get_signal_val_binstr(), 2)

    def _write(self, action, value):
        if self._narrow:
            if self.width == 32 and value >= 1 << 31:
                value -= 1 << 32  # the VPI integer is a signed 32-bit value
            self._gpi.set_signal_val_int(action.value, value)
        else:
            self._gpi.set_signal_val_binstr(action.value, format(value, f"0{self.width}b"))

    def deposit(self, value):
        """Write as ``handle.value = value`` does (the simulator applies it in this step)."""
        self._write(_GPISetAction.DEPOSIT, value)

    def write_now(self, value):
        """Write as ``handle.set(Immediate(value))`` does: at once, visible to reads."""
        self._write(_GPISetAction.NO_DELAY, value)

    def flip(self, bit):
        """A single-event upset: read, XOR one bit, write back at once."""
        self.write_now(self.read() ^ (1 << bit))
