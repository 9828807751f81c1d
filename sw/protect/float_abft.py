"""Block-wise ABFT for float GEMMs: the ``nn.Linear`` layers of a float model.

The float models (:mod:`sw.models.vit`, :mod:`sw.models.cnn`, real-scale ViTs) have no datapath hook, so
:class:`FloatABFT` attaches a forward hook to every ``nn.Linear``. For an output
``Y = X W^T + b`` with the rows of ``X`` (tokens, flattened with the batch) cut into blocks
of ``block_rows``, it compares the column sums of each block of ``Y`` with the checksum
``(sum_i X[i]) W^T + rows * b``. In float the two differ by rounding, so a column passes
when ``|difference| <= safety * 2 * (gamma(K + 1) + gamma(rows)) * T`` with
``T = (sum_i |X[i]|) |W|^T + rows * |b|`` and ``gamma(n) = n u / (1 - n u)`` (``u``: unit
roundoff of the dtype). That is the classical bound on the rounding error of a sum of
products, whatever the summation order (Higham, Accuracy and Stability, 3.1), applied to
the GEMM, the column sums and the checksum, with a safety factor (2 by default) for the
second-order terms. A clean run can therefore never raise an alarm; a corruption larger
than the bound is always caught; smaller ones are below the rounding noise of the layer.
A NaN or infinite difference fails. A failing block is recomputed (``F.linear`` on its
rows).

Costs counted per block of ``r`` rows, ``K`` inputs and ``N`` outputs: ``r K`` additions
(column sums of X), ``r K`` for those of |X|, ``2 K N`` MACs (checksum and its magnitude),
``r N`` additions (column sums of Y), ``N`` comparisons; |W| is computed once per layer.

:class:`LinearOutputFaults` flips bits of the Linear outputs (float32) with a bit error
rate, for tests and experiments; pass it as ``fault`` and it runs before the check.
Not covered: the attention matmuls of the float ViT (``@`` inside ``Attention.forward``) and
convolutions.
"""

import math

import torch
from torch import nn
from torch.nn import functional

from sw.inject.bit_flips import flip_bits, sample_flips
from sw.parameter_checks import check_positive_integer, check_probability

__all__ = ["FloatABFT", "LinearOutputFaults", "rounding_gamma", "DEFAULT_SAFETY"]

DEFAULT_SAFETY = 2.0


def rounding_gamma(n, dtype=torch.float32):
    """``n u / (1 - n u)``: the bound on the relative error of ``n`` rounded operations."""
    unit = torch.finfo(dtype).eps / 2
    if n * unit >= 1:
        raise ValueError(f"n = {n} is too large for the rounding bound of {dtype}")
    return n * unit / (1 - n * unit)


class LinearOutputFaults:
    """Flips each bit of every Linear output with probability ``bit_error_rate``.

    Members
    -------
    flips : int
        Bits flipped so far.
    """

    def __init__(self, bit_error_rate, *, seed=0):
        check_probability("bit_error_rate", bit_error_rate)
        self.bit_error_rate = float(bit_error_rate)
        self.generator = torch.Generator().manual_seed(seed)
        self.flips = 0

    def __call__(self, name, output):
        if output.dtype != torch.float32:
            raise TypeError(f"LinearOutputFaults flips float32 outputs, not {output.dtype}")
        flips = sample_flips(1, (output.numel(),), 32, self.bit_error_rate, self.generator)
        self.flips += flips.total
        if flips.total == 0:
            return output
        return flip_bits(output.contiguous(), flips.coordinates[0], flips.bit)


class FloatABFT:
    """Column-checksum ABFT on every ``nn.Linear`` of ``model`` while attached.

    Use as a context manager (``with FloatABFT(model) as abft: model(x)``) or call
    :meth:`attach` and :meth:`detach`.

    Parameters
    ----------
    model : torch.nn.Module
        The float network.
    block_rows : int
        Rows (tokens x batch, flattened) per block.
    safety : float
        Factor (at least 1) on the rounding bound.
    fault : callable, optional
        ``fault(name, output) -> output`` applied to each Linear's output before the check.

    Members
    -------
    stats : dict of str to dict
        Per Linear (module name): ``macs``, ``check_ops``, ``blocks``, ``detections``.

    Raises
    ------
    TypeError
        For an option of the wrong type or range.
    """

    def __init__(self, model, *, block_rows=64, safety=DEFAULT_SAFETY, fault=None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, not {model!r}")
        check_positive_integer("block_rows", block_rows)
        if not isinstance(safety, (int, float)) or isinstance(safety, bool) or not safety >= 1 \
                or math.isinf(safety):
            raise TypeError(f"safety must be a number of at least 1, not {safety!r}")
        if fault is not None and not callable(fault):
            raise TypeError(f"fault must be callable, not {fault!r}")
        self.model, self.block_rows, self.safety, self.fault = model, block_rows, safety, fault
        self.stats = {}
        self._handles = []
        self._weight_magnitudes = {}

    def attach(self):
        """Hook every Linear of the model (once); its |W| is taken here, once."""
        if not self._handles:
            for name, module in self.model.named_modules():
                if isinstance(module, nn.Linear):
                    with torch.no_grad():
                        self._weight_magnitudes[name] = module.weight.abs().t()
                    self._handles.append(module.register_forward_hook(
                        lambda module, inputs, output, name=name:
                        self._check(name, module, inputs[0], output)))
        return self

    def detach(self):
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._weight_magnitudes = {}

    def __enter__(self):
        return self.attach()

    def __exit__(self, *exc_info):
        self.detach()

    def total(self):
        """Counters summed over all layers."""
        total = dict(macs=0, check_ops=0, blocks=0, detections=0)
        for stats in self.stats.values():
            for key in total:
                total[key] += stats[key]
        return total

    @torch.no_grad()
    def _check(self, name, module, inputs, output):
        if self.fault is not None:
            output = self.fault(name, output)
        weight, bias = module.weight, module.bias
        k, n = weight.shape[1], weight.shape[0]
        x = inputs.reshape(-1, k)
        y = output.reshape(-1, n)
        m = x.shape[0]
        rows = min(self.block_rows, m)
        blocks = -(-m // rows)
        padded = blocks * rows
        x_blocks = functional.pad(x, (0, 0, 0, padded - m)).reshape(blocks, rows, k)
        y_blocks = functional.pad(y, (0, 0, 0, padded - m)).reshape(blocks, rows, n)
        valid = torch.clamp(m - torch.arange(blocks) * rows, max=rows).to(x.dtype)[:, None]
        checksum = x_blocks.sum(1) @ weight.t()
        magnitude = x_blocks.abs().sum(1) @ self._weight_magnitudes[name]
        if bias is not None:
            checksum = checksum + valid * bias
            magnitude = magnitude + valid * bias.abs()
        gamma = rounding_gamma(k + 1, x.dtype) + rounding_gamma(rows, x.dtype)
        bound = self.safety * 2 * gamma * magnitude
        failed = ~((y_blocks.sum(1) - checksum).abs() <= bound)     # NaN and Inf fail
        bad = failed.any(-1)
        stats = self.stats.setdefault(name, dict(macs=0, check_ops=0, blocks=0, detections=0))
        stats["macs"] += m * k * n
        stats["check_ops"] += 2 * m * k + 2 * blocks * k * n + m * n + blocks * n
        stats["blocks"] += blocks
        detected = int(bad.sum())
        stats["detections"] += detected
        if detected == 0:
            return output
        index = (bad.nonzero()[:, 0, None] * rows + torch.arange(rows)).reshape(-1)
        index = index[index < m]
        y = y.clone()
        y[index] = functional.linear(x[index], weight, bias)
        return y.reshape(output.shape)
