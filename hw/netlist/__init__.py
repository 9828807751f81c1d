"""What is made from the generated design: Verilog and RTLIL, fault sites (Yosys), area."""
