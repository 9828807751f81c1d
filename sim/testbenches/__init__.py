"""The cocotb test modules the simulator runs: GEMM co-verification and the campaign experiment loop."""
