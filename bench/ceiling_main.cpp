// The speed ceiling of a campaign: the same Verilated harness and accelerator running the
// same experiments' cycles, driven from C++ with no Python and no VPI in the loop.
//
// Usage: ceiling EXPERIMENTS K ROWS COLS INDEX_WIDTH EXPERIMENT_CYCLES
// Loads a tile of depth K over the host port (constant operand words), then runs
// EXPERIMENTS harness experiments of EXPERIMENT_CYCLES cycles each (the harness resets
// the accelerator, writes K and START, waits for DONE, reads every row back and compares)
// and prints experiments per second and cycles per second.

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "Vceiling.h"
#include "verilated.h"

namespace {

void cycle(Vceiling& top) {
    top.clk = 1;
    top.eval();
    top.clk = 0;
    top.eval();
}

template <typename Word>
void fill(Word& word, unsigned words, uint32_t value) {
    for (unsigned i = 0; i < words; ++i) word[i] = value;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 7) {
        std::fprintf(stderr, "usage: %s EXPERIMENTS K ROWS COLS INDEX_WIDTH EXPERIMENT_CYCLES\n",
                     argv[0]);
        return 2;
    }
    const long experiments = std::atol(argv[1]);
    const int k = std::atoi(argv[2]);
    const int rows = std::atoi(argv[3]);
    const int cols = std::atoi(argv[4]);
    const int index_width = std::atoi(argv[5]);
    const int experiment_cycles = std::atoi(argv[6]);
    Verilated::commandArgs(argc, argv);
    const auto top = std::make_unique<Vceiling>();

    top->clk = 0;
    top->rst = 1;
    top->eval();
    cycle(*top);
    top->rst = 0;
    const unsigned data_words = (std::max(8 * rows, 32 * cols) + 31) / 32;
    for (int step = 0; step < k; ++step) {
        for (int region = 1; region <= 2; ++region) {
            top->addr = (region << index_width) | step;
            fill(top->wdata, data_words, 0x01fe7f80u + step * 0x01010101u);
            top->we = 1;
            cycle(*top);
        }
    }
    top->we = 0;
    top->tile_k = k;
    top->watchdog = 1 << 20;
    top->row_mask = (1u << rows) - 1;
    fill(top->lane_mask, (32 * cols + 31) / 32, 0xffffffffu);

    unsigned run = 0;
    long mismatching = 0;
    const auto start = std::chrono::steady_clock::now();
    for (long e = 0; e < experiments; ++e) {
        run ^= 1;
        top->run = run;
        for (int c = 0; c < experiment_cycles; ++c) cycle(*top);
        if (!top->finished) {
            std::fprintf(stderr, "experiment %ld did not finish in %d cycles\n", e,
                         experiment_cycles);
            return 1;
        }
        mismatching += top->mismatch != 0;
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("{\"experiments_per_second\": %.1f, \"cycles_per_second\": %.1f, "
                "\"mismatching\": %ld}\n",
                experiments / seconds, experiments * double(experiment_cycles) / seconds,
                mismatching);
    return 0;
}
