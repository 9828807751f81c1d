"""Software fault injection: flip counts follow the BER formula, flips act exactly, selections
confine them, and a seed fixes them."""

import math
import os
import subprocess
import sys

import pytest
import torch

from sw.analysis.vulnerability import quantized_model
from sw.datapath import Recorder, Site
from sw.inject import bit_flips, operation
from sw.inject.bit_flips import TooManyFlips, check_flip_budget, flip_bits, sample_flips
from sw.inject.operation import FaultInjector
from sw.models.datasets import load_dataset
from sw.models.quantize import quantize
from sw.models.vit import vit_tiny_patch16_224
from sw.twin.gemm import gemm_int8, wrap_int32

IMAGES = 360


@pytest.fixture(scope="module")
def vit():
    return quantized_model("vit", "digits")[1]


@pytest.fixture(scope="module")
def images():
    return load_dataset("digits").test_images


def popcount(values):
    """Set bits of each int64 element (values below 2**32)."""
    return sum(((values >> bit) & 1) for bit in range(32))


# Bits per image of fc1 in block 0 of the digits ViT, from its shape (17 tokens, 64 -> 128),
# and of block 1's softmax exponentials (4 heads x 17 x 17 float32 values).
FC1_BITS = {"a": 17 * 64 * 8, "b": 64 * 128 * 8, "product": 17 * 128 * 64 * 16,
            "partial_sum": 17 * 128 * 64 * 32, "output": 17 * 128 * 32}


@pytest.mark.parametrize("target", sorted(FC1_BITS))
def test_flip_counts_follow_ber_times_elements_times_bits(vit, images, target):
    ber = 8.0 / FC1_BITS[target]
    injector = FaultInjector(ber, seed=11, layer=0, kind="fc1", targets=[target])
    vit(images, injector)
    [(site, name, counts)] = injector.flips
    assert (site.name, name) == ("blocks.0.mlp.fc1", target)
    expected = ber * FC1_BITS[target]
    # Binomial mean and variance: the mean over 360 images is within 5 standard errors.
    assert abs(counts.double().mean() - expected) < 5 * math.sqrt(expected / IMAGES)
    assert 0.6 * expected < counts.double().var() < 1.6 * expected


def test_nonlinear_flip_counts_follow_the_formula(vit, images):
    bits = 4 * 17 * 17 * 32
    injector = FaultInjector(10.0 / bits, seed=5, layer=1, kind="softmax")
    vit(images, injector)
    counts = {stage: counts for _, stage, counts in injector.flips}
    assert list(counts) == ["input", "exp", "sum", "quotient"]
    for stage, elements in (("exp", 4 * 17 * 17), ("sum", 4 * 17)):
        expected = 10.0 / bits * elements * 32
        assert abs(counts[stage].double().mean() - expected) < 5 * math.sqrt(expected / IMAGES)


def test_sampled_flips_change_exactly_that_many_bits():
    generator = torch.Generator().manual_seed(0)
    flips = sample_flips(50, (3, 40), 32, 1e-3, generator)
    values = torch.zeros(50 * 3 * 40, dtype=torch.int32)
    element = (flips.image * 3 + flips.coordinates[0]) * 40 + flips.coordinates[1]
    flipped = flip_bits(values, element, flips.bit).to(torch.int64) & 0xFFFFFFFF
    changed = popcount(flipped).reshape(50, -1).sum(1)
    # Only two flips of one bit cancel; at this rate that is rare.
    assert (changed <= flips.counts).all() and changed.sum() >= flips.counts.sum() - 2
    assert flips.counts.sum() > 100


def test_output_flips_xor_the_accumulators(vit, images):
    clean, faulty = Recorder(), Recorder(FaultInjector(5e-5, seed=2, layer=1, kind="proj",
                                                       targets=["output"]))
    vit(images, clean)
    vit(images, faulty)
    key = ("blocks.1.attn.proj", "output")
    difference = (clean.values[key] ^ faulty.values[key]).to(torch.int64) & 0xFFFFFFFF
    counts = faulty.inner.flips[0][2]
    changed = popcount(difference).reshape(IMAGES, -1).sum(1)
    # Only two flips of one bit cancel; at this rate that is rare.
    assert (changed <= counts).all() and changed.sum() >= counts.sum() - 2
    assert counts.sum() > 300


def single_flip(target, a, b, site):
    """The GEMM's result with exactly one flip of ``target`` (the first seed that gives one)."""
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    bits = {"b": k * n * 8, "product": m * n * k * 16, "partial_sum": m * n * k * 32}[target]
    for seed in range(100):
        injector = FaultInjector(1.0 / bits, seed=seed, targets=[target])
        result = injector.gemm(site, a, b)
        if injector.total_flips() == 1:
            return result
    raise AssertionError("no seed gave exactly one flip")


@pytest.fixture
def operands():
    generator = torch.Generator().manual_seed(7)
    a = torch.randint(-128, 128, (1, 6, 20), dtype=torch.int8, generator=generator)
    b = torch.randint(-128, 128, (20, 5), dtype=torch.int8, generator=generator)
    return a, b, Site("test.gemm", "fc1", 0, "gemm", tuple(range(6)))


def test_weight_flip_adds_a_column_of_a_times_the_weight_change(operands):
    a, b, site = operands
    difference = (single_flip("b", a, b, site).to(torch.int64) - gemm_int8(a, b))[0]
    column = int(difference.abs().sum(0).nonzero()[0])
    assert difference[:, [n for n in range(5) if n != column]].eq(0).all()
    candidates = [(k, bit) for k in range(20) for bit in range(8)
                  if torch.equal(difference[:, column],
                                 a[0, :, k].to(torch.int64) * _flip_int8_delta(b[k, column], bit))]
    assert candidates


def _flip_int8_delta(value, bit):
    pattern = (int(value) & 0xFF) ^ (1 << bit)
    return (pattern - 256 if pattern & 0x80 else pattern) - int(value)


def test_product_flip_changes_one_output_by_a_flipped_product(operands):
    a, b, site = operands
    difference = single_flip("product", a, b, site).to(torch.int64) - gemm_int8(a, b)
    [(image, m, n)] = difference.nonzero().tolist()
    products = a[0, m].to(torch.int64) * b[:, n].to(torch.int64)
    deltas = {((int(p) & 0xFFFF) ^ (1 << bit)) - (65536 if ((int(p) & 0xFFFF) ^ (1 << bit))
                                                   & 0x8000 else 0) - int(p)
              for p in products for bit in range(16)}
    assert int(difference[image, m, n]) in deltas


def test_partial_sum_flip_changes_one_output_by_a_power_of_two(operands):
    a, b, site = operands
    difference = wrap_int32(single_flip("partial_sum", a, b, site).to(torch.int64)
                            - gemm_int8(a, b)).to(torch.int64)
    [(image, m, n)] = difference.nonzero().tolist()
    change = abs(int(difference[image, m, n]))
    assert change & (change - 1) == 0
    partial = [int(value) for value in torch.cumsum(a[0, m].to(torch.int64)
                                                    * b[:, n].to(torch.int64), 0)]
    bit = change.bit_length() - 1
    sign = int(difference[image, m, n]) > 0
    # Some step's partial sum had that bit clear (for +) or set (for -), as two's complement.
    assert any((((value & 0xFFFFFFFF) >> bit) & 1) == (0 if sign else 1) for value in partial)


def test_a_draw_beyond_the_budget_is_refused_with_the_memory_it_needs(monkeypatch):
    # The largest region of the digits ViT (qkv partial sums) over its 360 test images.
    with pytest.raises(TooManyFlips) as raised:
        check_flip_budget(1.0, 360, 6_684_672)
    assert isinstance(raised.value, ValueError)
    assert str(raised.value) == (
        "bit error rate 1 draws about 2,406,481,920 flips at once (360 x 6,684,672 bits), "
        "which would need about 286.9 GiB of memory; at most 8,388,608 flips (1.0 GiB) are "
        "drawn at once, rates up to 0.0035 here")
    check_flip_budget(0.0034, 360, 6_684_672)
    monkeypatch.setattr(bit_flips, "MAX_FLIPS", 1000)
    generator = torch.Generator().manual_seed(0)
    with pytest.raises(TooManyFlips, match="^bit error rate 0.1 draws about 1,280 flips"):
        sample_flips(4, (10, 10), 32, 0.1, generator)
    assert 0 < sample_flips(4, (10, 10), 32, 0.05, generator).total < 1000


@pytest.mark.parametrize("per_image_b", [False, True])
def test_changes_computed_in_chunks_equal_those_computed_at_once(monkeypatch, per_image_b):
    generator = torch.Generator().manual_seed(3)
    a = torch.randint(-128, 128, (2, 3, 17, 40), dtype=torch.int8, generator=generator)
    b = torch.randint(-128, 128, (2, 3, 40, 17) if per_image_b else (40, 17),
                      dtype=torch.int8, generator=generator)
    site = Site("s", "attn_scores", 0, "gemm", tuple(range(17)))

    def faulty():
        injector = FaultInjector(2e-3, seed=8, targets=["b", "product", "partial_sum"])
        return injector.gemm(site, a, b), injector.total_flips()

    at_once, flips = faulty()
    assert flips > 500 and not torch.equal(at_once, gemm_int8(a, b))
    monkeypatch.setattr(operation, "CHUNK_ELEMENTS", 50)
    assert torch.equal(faulty()[0], at_once)


PARTIAL_SUM_FLIPS = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
import torch
from sw.datapath import Site
from sw.inject.operation import FaultInjector
generator = torch.Generator().manual_seed(0)
a = torch.randint(-128, 128, (1, 8, 4096), dtype=torch.int8, generator=generator)
b = torch.randint(-128, 128, (4096, 8), dtype=torch.int8, generator=generator)
injector = FaultInjector(20000 / (8 * 8 * 4096 * 32), seed=0, targets=["partial_sum"])
injector.gemm(Site("s", "fc2", 0, "gemm", None), a, b)
print(injector.total_flips())
"""


def test_partial_sum_flips_of_a_deep_gemm_fit_in_two_gibibytes():
    # 20,000 flips x 4096 steps: the partial sums at once would take 640 MiB per tensor.
    result = subprocess.run([sys.executable, "-c", PARTIAL_SUM_FLIPS], capture_output=True,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert abs(int(result.stdout) - 20000) < 600


def test_same_seed_same_faults_other_seed_other_faults(vit, images):
    first = vit(images, FaultInjector(1e-6, seed=42))
    again = vit(images, FaultInjector(1e-6, seed=42))
    other = vit(images, FaultInjector(1e-6, seed=43))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_each_image_gets_its_own_faults(vit, images):
    same = images[:1].expand(200, -1, -1, -1)
    injector = FaultInjector(1e-6, seed=1)
    logits = vit(same, injector)
    counts = injector.flips_per_image()
    assert counts.unique().numel() > 5
    assert logits.unique(dim=0).shape[0] > 150


def rows_differ(clean, faulty, key):
    """Which rows (axis -2) of a recorded tensor changed, over all images and groups."""
    first, second = clean.values[key], faulty.values[key]
    if first.is_floating_point():
        same = (first == second) | (first.isnan() & second.isnan())
    else:
        same = first == second
    return (~same).transpose(-2, 0).reshape(first.shape[-2], -1).any(1)


@pytest.mark.parametrize("token", [0, 5])
def test_patch_selection_leaves_other_tokens_pre_attention_values_untouched(vit, images, token):
    clean, faulty = Recorder(), Recorder(FaultInjector(1e-4, seed=3, token=token))
    vit(images[:64], clean)
    vit(images[:64], faulty)
    for key in (("blocks.0.norm1", "output"), ("blocks.0.attn.qkv", "output")):
        changed = rows_differ(clean, faulty, key)
        assert changed.nonzero().flatten().tolist() == [token], key


def test_patch_selection_changes_only_that_tokens_row_of_attention(vit, images):
    clean = Recorder()
    faulty = Recorder(FaultInjector(3e-4, seed=4, token=7, kind="attn_scores"))
    vit(images[:64], clean)
    vit(images[:64], faulty)
    for key in (("blocks.0.attn.scores", "output"), ("blocks.0.attn.softmax", "quotient"),
                ("blocks.0.attn.context", "output"), ("blocks.0.mlp.fc2", "output")):
        changed = rows_differ(clean, faulty, key)
        assert changed.nonzero().flatten().tolist() == [7], key


def test_patch_selection_in_the_cnn_touches_only_that_patchs_positions(images):
    cnn = quantized_model("cnn", "digits")[1]
    clean, faulty = Recorder(), Recorder(FaultInjector(1e-4, seed=6, token=6, kind="conv1"))
    cnn(images[:64], clean)
    cnn(images[:64], faulty)
    changed = rows_differ(clean, faulty, ("convs.0", "output")).nonzero().flatten().tolist()
    owners = cnn.site("convs.0").row_tokens
    assert changed and all(owners[row] == 6 for row in changed)
    assert sorted(changed) == [row for row, owner in enumerate(owners) if owner == 6]


def test_layer_and_kind_select_their_sites_only(vit, images):
    injector = FaultInjector(1e-6, seed=0, layer=1)
    vit(images[:8], injector)
    assert {site.layer for site, _, _ in injector.flips} == {1}
    injector = FaultInjector(1e-6, seed=0, kind="layernorm")
    vit(images[:8], injector)
    assert {site.name for site, _, _ in injector.flips} == {
        "blocks.0.norm1", "blocks.0.norm2", "blocks.1.norm1", "blocks.1.norm2", "norm"}


def test_vit_tiny_patch16_224_takes_faults():
    torch.manual_seed(0)
    model = vit_tiny_patch16_224().eval()
    images = torch.rand(2, 3, 224, 224)
    quantized = quantize(model, images)
    clean = quantized(images)
    injector = FaultInjector(1e-9, seed=0, layer=3)
    faulty = quantized(images, injector)
    per_image = injector.flips_per_image()
    # Block 3 of ViT-Ti holds about 4e9 bits per image, mostly in partial sums.
    assert per_image.shape == (2,) and (per_image > 0).all()
    assert not torch.equal(clean, faulty)


@pytest.mark.parametrize("options, error, message", [
    (dict(bit_error_rate=2.0), TypeError, "bit_error_rate must be a number between 0 and 1, "
                                          "not 2.0"),
    (dict(bit_error_rate="1e-6"), TypeError, "bit_error_rate must be a number between 0 and "
                                             "1, not '1e-6'"),
    (dict(layer=-1), TypeError, "layer must be a non-negative integer or None, not -1"),
    (dict(token=1.5), TypeError, "token must be a non-negative integer or None, not 1.5"),
    (dict(kind="mlp"), TypeError, "kind must be one of 'patch_embed', "),
    (dict(targets=["weights"]), TypeError, "targets must be among 'a', 'b', 'product', "
                                            "'partial_sum', 'output', 'nonlinear', not "
                                            "'weights'"),
    (dict(seed="x"), TypeError, "seed must be an integer, not 'x'"),
])
def test_injector_rejects_bad_options(options, error, message):
    options = {"bit_error_rate": 1e-6, **options}
    with pytest.raises(error, match=f"^{__import__('re').escape(message)}"):
        FaultInjector(options.pop("bit_error_rate"), **options)
