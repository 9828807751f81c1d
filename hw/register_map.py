"""Host-port register map of the GEMM accelerator.

Plain Python (no Amaranth import), so that testbenches and the SoC-side software use the
same addresses as the generator. The address is ``region << index_width | index``; one bus
word is ``data_width`` bits wide, wide enough for a whole row of results.

===========  =====  ====  =============================================================
region       index  R/W   contents
===========  =====  ====  =============================================================
``CSR``      0      W     CTRL: bit 0 START (strobe; refused while busy or with an illegal K)
``CSR``      1      R     STATUS: bit 0 BUSY, bit 1 DONE (until the next START that is
                          accepted or refused while idle), bit 2 ERROR (the last START was
                          refused), bit 3 ABFT_ERROR and bit 4 ABFT_CORRECTED (of the last
                          tile), bit 5 RANGE_FLAG (a value read was out of range; sticky)
``CSR``      2      R/W   K: depth of the next tile, 1 .. k_max (reset value k_max); a
                          written word above k_max reads back as k_max + 1 (refused)
``CSR``      3      R     CYCLES: clock cycles the last tile was busy
``CSR``      4      R     TILES: tiles completed since reset
``CSR``      5      R     CONFIG: rows | cols << 8 | k_max << 16 | ABFT mode << 29
                          (0 none, 1 col, 2 rowcol) | range checker << 31
``CSR``      6      R     ROW_SYNDROME: bit i, row i disagreed with its checksum (0 while busy)
``CSR``      7      R     COL_SYNDROME: bit j, column j disagreed with its checksum (0 while busy)
``CSR``      8      R     DETECTED: tiles with an ABFT error since reset
``CSR``      9      R     CORRECTED: tiles corrected since reset
``CSR``      10     R/W   RANGE_LOWER: signed lower bound, inclusive (reset -2**31)
``CSR``      11     R/W   RANGE_UPPER: signed upper bound, inclusive (reset 2**31 - 1)
``CSR``      12     R/W   RANGE_CONTROL: bit 0 zero mode (else clamp); write bit 1: clear
                          RANGE_COUNT and RANGE_FLAG
``CSR``      13     R     RANGE_COUNT: out-of-range values read since the last clear
``A``        k      W     column k of the A tile: lane i (bits 8i .. 8i+7) is A[i][k]
``B``        k      W     row k of the B tile: lane j (bits 8j .. 8j+7) is B[k][j]
``RESULT``   i      R     row i of the C tile: lane j (bits 32j .. 32j+31) is C[i][j],
                          corrected by the checksums and range-checked when those exist
===========  =====  ====  =============================================================

A design with nonlinear units (``AcceleratorConfig.nonlinear``) has a third region bit:
region ``4 + u`` belongs to unit ``u`` of :data:`hw.config.NONLINEAR_UNITS` (softmax 4,
GELU 5, LayerNorm 6). Its index is ``window * W + entry`` with ``W`` =
:attr:`RegisterMap.unit_window` entries per window (:class:`UnitWindow`): ``ROW`` (write:
input element ``entry``, signed, the unit's low bits; read: output code ``entry``, int8,
zero-extended), ``CSR`` (:class:`UnitCsr`, the unit's parameters in :data:`UNIT_PARAMS`
from ``PARAM`` on, then the checker counters from ``COUNT``), and for LayerNorm ``GAIN``
and ``OFFSET`` (the per-channel ``G_j`` and ``C_j``, write only).

Writes take effect at the clock edge that samples ``we``. Reads are registered: ``rdata``
shows the word addressed in the previous cycle. ``re`` marks a read the host consumes:
reads have no side effect except that a RESULT read with ``re`` counts out-of-range values.
CSRs read zero-extended (RANGE_LOWER and RANGE_UPPER as 32-bit patterns). The full
contract (refused STARTs, flag lifetimes, buffers while busy, reset) is
``docs/register-map.md``. Lanes are two's complement. Registers of units a configuration
lacks read as zero.
"""

from dataclasses import dataclass
from enum import IntEnum

__all__ = ["Region", "Csr", "Status", "RegisterMap", "pack_lanes", "unpack_lanes",
           "UnitWindow", "UnitCsr", "UnitStatus", "UNIT_PARAMS", "UNIT_CHECKS",
           "UNIT_FLAGS_SHIFT", "UNIT_COUNT_BITS", "NONLINEAR_REGION_BASE", "NONLINEAR_UNITS"]


class Region(IntEnum):
    """The two top address bits select a region."""
    CSR = 0
    A = 1
    B = 2
    RESULT = 3


class Csr(IntEnum):
    """Indices of the control and status registers in the ``CSR`` region."""
    CTRL = 0
    STATUS = 1
    K = 2
    CYCLES = 3
    TILES = 4
    CONFIG = 5
    ROW_SYNDROME = 6
    COL_SYNDROME = 7
    DETECTED = 8
    CORRECTED = 9
    RANGE_LOWER = 10
    RANGE_UPPER = 11
    RANGE_CONTROL = 12
    RANGE_COUNT = 13


class Status(IntEnum):
    """Bit positions in the STATUS register."""
    BUSY = 0
    DONE = 1
    ERROR = 2
    ABFT_ERROR = 3
    ABFT_CORRECTED = 4
    RANGE_FLAG = 5



#: The nonlinear units a design can carry beside the array (docs/nonlinear.md), in the
#: order of their address regions (re-exported by :mod:`hw.config`).
NONLINEAR_UNITS = ("softmax", "gelu", "layernorm")
#: Region of the first nonlinear unit; unit ``u`` of NONLINEAR_UNITS is at ``BASE + u``.
NONLINEAR_REGION_BASE = 4


class UnitWindow(IntEnum):
    """The top index bits of a nonlinear unit's region."""
    ROW = 0
    CSR = 1
    GAIN = 2
    OFFSET = 3


class UnitCsr(IntEnum):
    """A nonlinear unit's control and status registers (its ``CSR`` window)."""
    CTRL = 0
    """W: bit 0 START (refused while busy or with an illegal N: ERROR)."""
    STATUS = 1
    """R: :class:`UnitStatus` bits, the last row's checker flags from bit 8."""
    N = 2
    """R/W: the row length, 1 .. nonlinear_length (reset 1)."""
    PARAM = 3
    """R/W from here: the unit's parameters (:data:`UNIT_PARAMS`), one word each, or
    two (low, high) for a parameter wider than 32 bits."""
    COUNT = 16
    """R from here: the checkers' counters (rows that raised each flag, saturating)."""


class UnitStatus(IntEnum):
    """Bit positions of a nonlinear unit's STATUS register."""
    BUSY = 0
    DONE = 1
    ERROR = 2
    FLAG = 3
    """Some checker flag of the last row: the host recomputes the row."""


#: STATUS bit of a unit's first checker flag.
UNIT_FLAGS_SHIFT = 8
#: Bits of each checker counter (COUNT registers): rows that raised the flag, saturating.
UNIT_COUNT_BITS = 8
#: Each unit's parameters (the unit's ports), in CSR order from PARAM; their widths are in
#: :meth:`RegisterMap.unit_parameter_widths` and docs/nonlinear.md.
UNIT_PARAMS = {
    "softmax": ("scale_m", "scale_shift"),
    "gelu": ("scale_m", "scale_shift"),
    "layernorm": ("out_shift", "epsilon"),
}
#: LayerNorm's input width B (docs/nonlinear.md), which sets the epsilon CSR's width.
LAYERNORM_INPUT_BITS = 16
#: Each unit's checkers, in the order of its flag bits (docs/nonlinear.md).
UNIT_CHECKS = {
    "softmax": ("maximum", "exponential", "sum", "reciprocal", "total", "peak"),
    "gelu": ("exponential", "quotient", "sigmoid", "output"),
    "layernorm": ("mean", "variance", "root", "reciprocal", "normalized", "output"),
}


def _bits_for(count):
    """Address bits needed to index ``count`` entries (at least one)."""
    return max(1, (count - 1).bit_length())


@dataclass(frozen=True)
class RegisterMap:
    """Address and word geometry of one accelerator configuration."""
    config: "AcceleratorConfig"
    """The configuration (:class:`hw.config.AcceleratorConfig`) this map belongs to."""

    @property
    def rows(self):
        return self.config.rows

    @property
    def cols(self):
        return self.config.cols

    @property
    def k_max(self):
        return self.config.k_max

    @property
    def abft(self):
        return self.config.abft

    @property
    def range_check(self):
        return self.config.range_check

    @property
    def nonlinear(self):
        return self.config.nonlinear

    @property
    def unit_window(self):
        """Entries per window of a nonlinear unit's region (0 without units)."""
        if not self.nonlinear:
            return 0
        return 1 << _bits_for(max(self.config.nonlinear_length, 2 * UnitCsr.COUNT))

    @property
    def index_width(self):
        return _bits_for(max(self.k_max, self.rows, 16, 4 * self.unit_window))

    @property
    def addr_width(self):
        return self.index_width + (3 if self.nonlinear else 2)

    def unit_parameters(self, unit):
        """The parameter ports of ``unit`` in CSR order (see :data:`UNIT_PARAMS`)."""
        return UNIT_PARAMS[unit]

    def unit_parameter_widths(self, unit):
        """Bits of each parameter of ``unit``: a parameter wider than 32 bits takes two
        CSR words, its low bits first."""
        index_bits = self.config.nonlinear_length.bit_length()
        widths = {"scale_m": 16, "scale_shift": 6, "out_shift": 6,
                  "epsilon": 2 * LAYERNORM_INPUT_BITS + index_bits - 2}
        return {name: widths[name] for name in UNIT_PARAMS[unit]}

    def unit_address(self, unit, window, entry):
        """Bus address of ``entry`` of ``window`` (:class:`UnitWindow`) of nonlinear
        ``unit`` (``"softmax"``, ``"gelu"``, ``"layernorm"``)."""
        if unit not in self.nonlinear:
            raise ValueError(f"the design has no {unit} unit (it has "
                             f"{', '.join(self.nonlinear) or 'none'})")
        region = NONLINEAR_REGION_BASE + NONLINEAR_UNITS.index(unit)
        return self.address(region, int(window) * self.unit_window + entry)

    @property
    def data_width(self):
        return max(8 * self.rows, 32 * self.cols)

    def address(self, region, index):
        """Bus address of entry ``index`` of ``region``."""
        return (int(region) << self.index_width) | index

    @property
    def config_word(self):
        """The value the CONFIG register reads."""
        return (self.rows | self.cols << 8 | self.k_max << 16
                | self.config.abft_code << 29 | int(self.range_check) << 31)


def pack_lanes(values, lane_width):
    """Pack signed integers into one unsigned word, lane 0 in the least significant bits."""
    mask = (1 << lane_width) - 1
    word = 0
    for lane, value in enumerate(values):
        word |= (int(value) & mask) << (lane * lane_width)
    return word


def unpack_lanes(word, lanes, lane_width):
    """Split an unsigned word into ``lanes`` two's-complement integers."""
    mask = (1 << lane_width) - 1
    sign = 1 << (lane_width - 1)
    values = []
    for lane in range(lanes):
        raw = (word >> (lane * lane_width)) & mask
        values.append(raw - (raw & sign) * 2)
    return values
