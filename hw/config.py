"""One accelerator configuration: every generator parameter, validated once, and its timing.

Plain Python (no Amaranth import): the generator (:mod:`hw.accelerator`), the register map,
the Verilator build (:mod:`sim.build`), the harness and the PyTorch twin (:mod:`sw.twin`)
all take an :class:`AcceleratorConfig` and the constants below instead of repeating them.

Parameter errors follow one rule across the project: ``TypeError`` for a value that is wrong
by itself (wrong type, out of its range, not one of the choices), ``ValueError`` for values
that are each legal but do not fit together.
"""

from dataclasses import asdict, dataclass

from hw.register_map import NONLINEAR_UNITS, RegisterMap
from hw.validation import check_int

__all__ = ["AcceleratorConfig", "ABFT_MODES", "MAX_DIMENSION", "MAX_K", "INT32_MIN",
           "INT32_MAX", "BUFFER_READ_LATENCY", "compute_cycles", "busy_cycles",
           "NONLINEAR_UNITS", "MAX_NONLINEAR_LENGTH"]

#: Checksum modes of the generator, in the order of their CONFIG code.
ABFT_MODES = ("none", "col", "rowcol")
#: Largest number of PE rows or columns (bounded by the 64-bit syndrome CSRs).
MAX_DIMENSION = 64
#: Deepest operand buffer (the K CSR holds 1 .. k_max).
MAX_K = 4096
#: The accumulators' range: int32, wrapping around.
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
#: Cycles from a buffer address to its data (the operand memories' read port is registered).
BUFFER_READ_LATENCY = 1
#: Longest row each unit's arithmetic takes (docs/nonlinear.md).
MAX_NONLINEAR_LENGTH = {"softmax": 511, "gelu": 65535, "layernorm": 1023}


def compute_cycles(rows, cols, k):
    """Cycles of COMPUTE for a tile of depth ``k``: buffer read, skew and the wavefront."""
    return BUFFER_READ_LATENCY + k + rows + cols - 2


def busy_cycles(rows, cols, k):
    """Cycles a tile is busy, from the edge that samples START to DONE: compute, then drain."""
    return compute_cycles(rows, cols, k) + rows


@dataclass(frozen=True)
class AcceleratorConfig:
    """The parameters of one generated accelerator.

    Parameters
    ----------
    rows, cols : int
        Array size, 1 to :data:`MAX_DIMENSION` each; need not be equal or powers of two.
    k_max : int
        Depth of the operand buffers: the longest K one tile can take (1 to :data:`MAX_K`).
    abft : str
        ``"none"``, ``"col"`` (column checksums: detect and locate columns) or
        ``"rowcol"`` (row and column checksums: also correct).
    range_check : bool
        Whether the output path has a range checker.
    nonlinear : tuple of str
        Nonlinear units beside the array (any of :data:`NONLINEAR_UNITS`; a list is
        accepted and put in that order). Default none: the design is the GEMM accelerator
        alone, with its original addresses.
    nonlinear_length : int
        The longest row the nonlinear units take (their row buffers' depth).
    nonlinear_checkers : bool
        Whether the nonlinear units carry their checkers (flags and counters read 0
        without them).

    Raises
    ------
    TypeError
        If a parameter has the wrong type, is out of its range or is not one of its choices.
    """
    rows: int = 8
    cols: int = 8
    k_max: int = 256
    abft: str = "none"
    range_check: bool = False
    nonlinear: tuple = ()
    nonlinear_length: int = 256
    nonlinear_checkers: bool = True

    def __post_init__(self):
        check_int("Array rows", self.rows, 1, MAX_DIMENSION)
        check_int("Array cols", self.cols, 1, MAX_DIMENSION)
        check_int("k_max", self.k_max, 1, MAX_K)
        if self.abft not in ABFT_MODES:
            raise TypeError(f"abft must be one of {', '.join(map(repr, ABFT_MODES))}, "
                            f"not {self.abft!r}")
        if not isinstance(self.range_check, bool):
            raise TypeError(f"range_check must be True or False, not {self.range_check!r}")
        units = self.nonlinear
        if (not isinstance(units, (tuple, list)) or len(set(units)) != len(units)
                or any(unit not in NONLINEAR_UNITS for unit in units)):
            raise TypeError(f"nonlinear must be distinct units among "
                            f"{', '.join(NONLINEAR_UNITS)}, not {units!r}")
        object.__setattr__(self, "nonlinear",
                           tuple(unit for unit in NONLINEAR_UNITS if unit in units))
        longest = min((MAX_NONLINEAR_LENGTH[unit] for unit in self.nonlinear),
                      default=max(MAX_NONLINEAR_LENGTH.values()))
        check_int("nonlinear_length", self.nonlinear_length, 1, longest)
        if not isinstance(self.nonlinear_checkers, bool):
            raise TypeError(f"nonlinear_checkers must be True or False, not "
                            f"{self.nonlinear_checkers!r}")

    @property
    def fields(self):
        """The parameters as a dict (``AcceleratorConfig(**fields)`` rebuilds it); the
        nonlinear ones only when there are units, so that records of designs without them
        read as before."""
        fields = asdict(self)
        if not self.nonlinear:
            del fields["nonlinear"], fields["nonlinear_length"], fields["nonlinear_checkers"]
        else:
            fields["nonlinear"] = list(self.nonlinear)
        return fields

    @property
    def register_map(self):
        """The host-port geometry of this configuration (:class:`hw.register_map.RegisterMap`)."""
        return RegisterMap(self)

    @property
    def abft_code(self):
        """The ABFT mode's code in the CONFIG register: its index in :data:`ABFT_MODES`."""
        return ABFT_MODES.index(self.abft)

    def tile_cycles(self, k):
        """Clock cycles one tile of depth ``k`` is busy, from START sampled to DONE set."""
        check_int("K", k, 1, self.k_max)
        return busy_cycles(self.rows, self.cols, k)

    @property
    def label(self):
        """A short name for builds and reports, for example ``8x8-k256-rowcol-range``."""
        protection = ("" if self.abft == "none" else f"-{self.abft}") + (
            "-range" if self.range_check else "")
        units = "".join(f"-{unit}" for unit in self.nonlinear)
        if units:
            units += f"-len{self.nonlinear_length}" + (
                "" if self.nonlinear_checkers else "-unchecked")
        return f"{self.rows}x{self.cols}-k{self.k_max}{protection}{units}"
