# amaranth: UnusedElaboratable=no
"""Fault sites come from the generated netlist, with classes from the generator."""

from amaranth.hdl import Module, Signal, signed

from hw.accelerator import GemmAccelerator
from hw.config import AcceleratorConfig
from hw.gemm import systolic_array
from hw.gemm.processing_element import ProcessingElement
from hw.netlist.fault_sites import enumerate_fault_sites, sites_per_class


def sites_of(rows, cols, k_max=8):
    return {site.path: site for site in enumerate_fault_sites(
        GemmAccelerator(AcceleratorConfig(rows=rows, cols=cols, k_max=k_max)))}


def test_every_register_family_is_found_with_its_class_and_width():
    sites = sites_of(3, 2)
    assert sites["array.pe_2_1.accumulator"].fault_class == "accumulator"
    assert sites["array.pe_2_1.accumulator"].width == 32
    assert sites["array.pe_0_0.a_reg"].fault_class == "operand"
    assert sites["a_skew.lane2_stage1"].fault_class == "operand"
    assert sites["results.row_2"].fault_class == "output"
    assert sites["results.row_2"].width == 2 * 32
    assert sites["controller.tile_state"].fault_class == "control"
    assert sites["controller.step"].width == 4          # range(k_max + rows + cols + 1)
    assert sites["k"].module == "gemm_accelerator"
    assert sites["array.pe_1_1.b_reg"].module == "gemm_accelerator.array.pe_1_1"


def test_registers_that_drive_nothing_are_not_sites():
    sites = sites_of(3, 2)
    # The right-most column passes A on to nobody, the bottom row B.
    assert "array.pe_0_1.a_reg" not in sites and "array.pe_0_0.a_reg" in sites
    assert "array.pe_2_0.b_reg" not in sites and "array.pe_1_0.b_reg" in sites


def test_counts_scale_with_the_array():
    bits = sites_per_class(enumerate_fault_sites(GemmAccelerator(AcceleratorConfig(rows=8, cols=8, k_max=256))))
    assert bits["accumulator"] == 64 * 32
    # Operands: 8 * 7 A registers and 7 * 8 B registers in the grid, 28 + 28 skew stages.
    assert bits["operand"] == (8 * 7 + 7 * 8 + 28 + 28) * 8
    assert bits["output"] == 8 * 256 + 256          # result rows and the read-data register
    assert bits["checksum"] == 0 and bits["range"] == 0


class PipelinedMultiplierPE(ProcessingElement):
    """A PE variant with the product registered: one more register per PE."""

    def elaborate(self, platform):
        m = Module()
        a_reg = Signal(signed(8), name="a_reg")
        b_reg = Signal(signed(8), name="b_reg")
        product = Signal(signed(16), name="product_reg")
        accumulator = Signal(signed(32), name="accumulator")
        m.d.sync += [a_reg.eq(self.a_in), b_reg.eq(self.b_in),
                     product.eq(self.a_in * self.b_in), accumulator.eq(accumulator + product)]
        m.d.comb += [self.a_out.eq(a_reg), self.b_out.eq(b_reg),
                     self.accumulator.eq(accumulator)]
        return m


def test_a_register_added_to_the_generator_becomes_a_site(monkeypatch):
    """No list to update: a new register in a component is found by itself."""
    monkeypatch.setattr(systolic_array, "ProcessingElement", PipelinedMultiplierPE)
    sites = sites_of(2, 2)
    for i in range(2):
        for j in range(2):
            site = sites[f"array.pe_{i}_{j}.product_reg"]
            assert (site.width, site.fault_class) == (16, "control")   # no class declared
