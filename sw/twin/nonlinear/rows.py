"""What the three units share about rows: the input check, the hooked stages, the flags.

A unit's twin passes every intermediate through :class:`Stages`: the value is fitted to its
register, shown to an optional ``hook(stage, values)`` that may replace it (a fault
injector), and fitted again, as a corrupted register would hold it.
"""

import dataclasses

import torch

from sw.twin.nonlinear.arithmetic import fit

__all__ = ["check_rows", "Stages", "RowFlags"]

_INTEGER_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def check_rows(unit, values, low, high, length):
    """``values`` as int64 rows on the last axis, after checking them against the unit.

    ``TypeError`` for a non-tensor, a non-integer tensor or rows without elements;
    ``ValueError`` for rows longer than ``length`` or values outside ``[low, high]``.
    """
    if not isinstance(values, torch.Tensor) or values.dtype not in _INTEGER_DTYPES:
        raise TypeError(f"{unit} input must be an integer tensor, not {_describe(values)}")
    if values.dim() == 0 or values.shape[-1] == 0:
        raise TypeError(f"{unit} input must have rows of at least one element on its last "
                        f"axis, not shape {tuple(values.shape)}")
    if values.shape[-1] > length:
        raise ValueError(f"{unit} rows of {values.shape[-1]} elements exceed the unit's "
                         f"length {length}")
    values = values.to(torch.int64)
    if values.numel() and (values.min() < low or values.max() > high):
        raise ValueError(f"{unit} input values must lie in [{low}, {high}], not "
                         f"[{int(values.min())}, {int(values.max())}]")
    return values


def _describe(values):
    if isinstance(values, torch.Tensor):
        return f"a {values.dtype} tensor"
    return repr(values)


class Stages:
    """Fits each named intermediate to its register and lets ``hook`` replace it."""

    def __init__(self, unit, registers, hook):
        if hook is not None and not callable(hook):
            raise TypeError(f"{unit} hook must be callable or None, not {hook!r}")
        self.unit = unit
        self.registers = registers
        self.hook = hook

    def __call__(self, stage, values):
        bits, signed = self.registers[stage]
        values = fit(values, bits, signed)
        if self.hook is None:
            return values
        replaced = self.hook(stage, values)
        if (not isinstance(replaced, torch.Tensor) or replaced.dtype not in _INTEGER_DTYPES
                or replaced.shape != values.shape):
            raise TypeError(f"{self.unit} hook must return an integer tensor of shape "
                            f"{tuple(values.shape)} for stage {stage!r}, not "
                            f"{_describe(replaced)}")
        return fit(replaced.to(torch.int64), bits, signed)


@dataclasses.dataclass(frozen=True)
class RowFlags:
    """Base of the checkers' results: one boolean per row for each check (True: raised)."""

    @property
    def names(self):
        """The checks, in the order the unit runs them."""
        return tuple(field.name for field in dataclasses.fields(self))

    @property
    def alarm(self):
        """Per row: some check raised, the host recomputes the row."""
        flags = [getattr(self, name) for name in self.names]
        alarm = flags[0]
        for flag in flags[1:]:
            alarm = alarm | flag
        return alarm
