"""Protections of the quantized models, composed around a datapath (e.g. the fault injector).

:func:`protect` builds the datapath of a protection around ``inner``:

- ``none``: ``inner`` itself;
- ``abft``: :class:`sw.protect.block_abft.BlockABFT` around ``inner``;
- ``range``: :class:`sw.protect.range_protection.RangeProtection` around ``inner``;
- ``abft+range``: range protection around block ABFT around ``inner``: a GEMM is checked
  (and its bad blocks recomputed) before its output's range is checked, as in the hardware,
  where the range checker sits on the read path after the checksum unit.

:func:`protection_summary` walks such a chain and adds up what the protections counted.
"""

from sw.datapath import Datapath
from sw.protect.block_abft import BlockABFT
from sw.protect.range_protection import RangeProtection

__all__ = ["PROTECTIONS", "protect", "protection_summary", "check_protection_name"]

#: Names accepted by :func:`protect`.
PROTECTIONS = ("none", "abft", "range", "abft+range")


def check_protection_name(protection):
    """Raise ``TypeError`` naming the parameter unless ``protection`` is known."""
    if not isinstance(protection, str):
        raise TypeError(f"protection must be a string, not {protection!r}")
    if protection not in PROTECTIONS:
        raise TypeError(f"protection must be one of {', '.join(map(repr, PROTECTIONS))}, "
                        f"not {protection!r}")


def protect(protection, inner=None, *, bounds=None, abft_options=None, range_options=None):
    """The datapath of ``protection`` around ``inner`` (fault-free by default).

    Parameters
    ----------
    protection : str
        One of :data:`PROTECTIONS`.
    inner : Datapath, optional
        What computes the operations, e.g. a :class:`sw.inject.operation.FaultInjector`.
    bounds : dict, optional
        Profiled bounds (:func:`sw.protect.range_protection.profile_bounds`); required with range.
    abft_options, range_options : dict, optional
        Keyword options of :class:`BlockABFT` and :class:`RangeProtection`.

    Raises
    ------
    TypeError
        For an unknown protection or a bad option.
    ValueError
        For a range protection without ``bounds``.
    """
    check_protection_name(protection)
    inner = Datapath() if inner is None else inner
    if not isinstance(inner, Datapath):
        raise TypeError(f"inner must be a Datapath, not {inner!r}")
    for name, options in (("abft_options", abft_options), ("range_options", range_options)):
        if options is not None and not isinstance(options, dict):
            raise TypeError(f"{name} must be a dict of keyword options, not {options!r}")
    datapath = inner
    if "abft" in protection:
        datapath = BlockABFT(datapath, **(abft_options or {}))
    if "range" in protection:
        if bounds is None:
            raise ValueError(f"protection {protection!r} needs bounds from profile_bounds")
        datapath = RangeProtection(bounds, datapath, **(range_options or {}))
    return datapath


def _chain(datapath):
    while isinstance(datapath, (BlockABFT, RangeProtection)):
        yield datapath
        datapath = datapath.inner


def protection_summary(datapath):
    """What the protections of a :func:`protect` chain counted, added up.

    Returns
    -------
    dict
        ``macs`` (the model's, as the GEMMs went by), ``check_ops`` and
        ``overhead_percent`` (check operations over MACs), ``abft_check_ops``,
        ``range_check_ops``, ``detections`` (blocks that failed their check),
        ``recomputed_blocks``, ``recompute_macs``, ``wrong_blocks``, ``false_alarms`` and
        ``missed`` (with ``audit``), ``clamped``, ``nonfinite``, ``recomputed_rows``, and per
        kind ``by_kind`` {kind: {"abft": ..., "range": ...}}.
    """
    summary = dict(macs=0, check_ops=0, abft_check_ops=0, range_check_ops=0, detections=0,
                   recomputed_blocks=0, recompute_macs=0, wrong_blocks=0, false_alarms=0,
                   missed=0, clamped=0, nonfinite=0, recomputed_rows=0, by_kind={})
    for layer in _chain(datapath):
        if isinstance(layer, BlockABFT):
            total = layer.total()
            summary["macs"] = max(summary["macs"], total.macs)
            summary["abft_check_ops"] += total.check_ops
            summary["detections"] += total.detections
            summary["recomputed_blocks"] += total.detections
            for name in ("recompute_macs", "wrong_blocks", "false_alarms", "missed"):
                summary[name] += getattr(total, name)
            for kind, stats in layer.stats.items():
                summary["by_kind"].setdefault(kind, {})["abft"] = stats.as_dict()
        else:
            total = layer.total()
            summary["macs"] = max(summary["macs"], total.macs)
            summary["range_check_ops"] += total.check_ops
            for name in ("clamped", "nonfinite", "recomputed_rows"):
                summary[name] += getattr(total, name)
            for kind, stats in layer.stats.items():
                summary["by_kind"].setdefault(kind, {})["range"] = stats.as_dict()
    summary["check_ops"] = summary["abft_check_ops"] + summary["range_check_ops"]
    summary["overhead_percent"] = (100.0 * summary["check_ops"] / summary["macs"]
                                   if summary["macs"] else 0.0)
    return summary
