"""The GEMM datapath: processing element, skew buffers, systolic array, result buffer, controller."""
