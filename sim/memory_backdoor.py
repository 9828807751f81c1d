"""Backdoor writes into the design's memories: the campaign testbench's operand loads.

A host fills the operand buffers over its port, one word per cycle: 2 K cycles for a tile
whose run takes about K, each as dear to simulate as a cycle of the run. A campaign's
upsets strike only during the run, so its testbench writes the buffers directly, as a
UVM backdoor does, in zero simulated time: the simulator's C++ ``main``
(``sim/harness_main.cpp``) exports :data:`BACKDOOR_SYMBOL`, which copies the words into
the Verilated memory, and this module calls it through ``ctypes`` from inside the
simulator process. The write path over the host port stays covered by the testbenches
that load tiles over the bus (``sim.testbenches.gemm``, the upset testbenches), and every
tile a campaign loads this way must pass its golden run against the twin.
"""

import ctypes

__all__ = ["BACKDOOR_SYMBOL", "MemoryBackdoor"]

#: The C function the simulator exports (its link makes the symbol dynamic).
BACKDOOR_SYMBOL = "softerror_write_memory"

_ERRORS = {-1: "no such scope", -2: "no such one-dimensional public memory",
           -3: "more words than the memory has entries"}


class MemoryBackdoor:
    """Writes one memory, ``name`` in the Verilator scope ``scope`` (dotted instance
    path, e.g. ``softerror_harness.accelerator``); only inside the simulator process."""

    def __init__(self, scope, name):
        try:
            function = getattr(ctypes.CDLL(None), BACKDOOR_SYMBOL)
        except AttributeError:
            raise RuntimeError(f"this simulator does not export {BACKDOOR_SYMBOL} (a build "
                               "from before the memory backdoor): remove it from the build "
                               "cache") from None
        function.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                             ctypes.c_uint32, ctypes.c_uint32]
        function.restype = ctypes.c_int
        self._function = function
        self.scope, self.name = scope, name
        self._scope, self._name = scope.encode(), name.encode()

    def write(self, words, word_bytes):
        """Write ``words`` (bytes: consecutive little-endian words of ``word_bytes`` bytes,
        each zero-extended or truncated to the memory's width) from entry 0 on."""
        count, rest = divmod(len(words), word_bytes)
        if rest:
            raise ValueError(f"words: {len(words)} bytes is not a whole number of "
                             f"{word_bytes}-byte words")
        status = self._function(self._scope, self._name, words, word_bytes, count)
        if status:
            raise RuntimeError(f"backdoor write of {count} words into {self.scope}."
                               f"{self.name}: {_ERRORS.get(status, status)}")
