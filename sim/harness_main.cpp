// C++ main for the cocotb-enabled Verilator model: the clock lives here, not in Python.
//
// cocotb's own main for Verilator leaves the clock to a cocotb Clock, that is to one VPI
// timed callback per edge, or to a `--timing` Verilog clock; either costs more per cycle
// than evaluating the model itself. Here the clock input `clk` is toggled in C++ every
// CLOCK_HALF_PERIOD time units (rising edges at half, 3 * half, ...; the clock is low at
// time 0). A full time step goes through the same VPI phases as cocotb's loop: next-time
// and timed callbacks, evaluation until no VPI write is pending, value-change callbacks,
// read-write and read-only synchronisation. The simulation ends when cocotb finishes.
//
// Fast path: Python runs only inside callbacks, so after a full step in which no callback
// fired, nothing but a value-change callback can fire before the next timed deadline
// (read-write, read-only and next-time callbacks would have fired in that step). Until
// the deadline each step is then just the clock edge, the evaluation and a check for
// value-change callbacks; when one fires, the step is completed in full and the loop
// returns to full steps.
//
// Backdoor: `softerror_write_memory` copies words into a public memory of the model, in
// zero simulated time, for a testbench that calls it through ctypes (the link exports it).

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>

#include "Vtop.h"
#include "verilated.h"
#include "verilated_vpi.h"

#if VM_TRACE
#if VM_TRACE_FST
#include "verilated_fst_c.h"
using Trace = VerilatedFstC;
#else
#include "verilated_vcd_c.h"
using Trace = VerilatedVcdC;
#endif
#endif

#ifndef CLOCK_HALF_PERIOD
#error "Compile with -DCLOCK_HALF_PERIOD=<time units>"
#endif

extern "C" void vlog_startup_routines_bootstrap(void);

namespace {

uint64_t now = 0;

// Run value-change callbacks until they stop firing; true if any fired.
bool run_value_callbacks() {
    bool fired = false;
    while (VerilatedVpi::callValueCbs()) fired = true;
    return fired;
}

// Evaluate the current time step to a fixed point, with cocotb's callbacks in between;
// true if any callback fired.
bool settle(Vtop& top) {
    bool fired = false;
    do {
        do {
            top.eval_step();
            VerilatedVpi::clearEvalNeeded();
            VerilatedVpi::doInertialPuts();
            fired |= run_value_callbacks();
        } while (VerilatedVpi::evalNeeded());
        fired |= VerilatedVpi::callCbs(cbReadWriteSynch);
        VerilatedVpi::doInertialPuts();
        fired |= run_value_callbacks();
    } while (VerilatedVpi::evalNeeded());
    top.eval_end_step();
    fired |= VerilatedVpi::callCbs(cbReadOnlySynch);
    return fired;
}

}  // namespace

// Write `count` words of `word_bytes` bytes each (little-endian, word 0 first) into the
// first entries of the one-dimensional memory `name` of scope `scope` (a public variable),
// zero-extending or truncating each to the entry. Returns 0, or -1 for no such scope, -2
// for no such memory, -3 when the memory has fewer than `count` entries.
extern "C" __attribute__((visibility("default"))) int softerror_write_memory(
    const char* scope, const char* name, const unsigned char* words, uint32_t word_bytes,
    uint32_t count) {
    const VerilatedScope* const scopep = Verilated::threadContextp()->scopeFind(scope);
    if (!scopep) return -1;
    const VerilatedVar* const varp = scopep->varFind(name);
    if (!varp || varp->udims() != 1) return -2;
    if (count > static_cast<uint32_t>(varp->elements(1))) return -3;
    const uint32_t entry = varp->entSize();
    const uint32_t copied = std::min(word_bytes, entry);
    for (uint32_t i = 0; i < count; ++i) {
        auto* const entryp = static_cast<unsigned char*>(
            varp->datapAdjustIndex(varp->datap(), 1, varp->low(1) + static_cast<int>(i)));
        std::memcpy(entryp, words + static_cast<size_t>(i) * word_bytes, copied);
        std::memset(entryp + copied, 0, entry - copied);
    }
    return 0;
}

double sc_time_stamp() { return static_cast<double>(now); }

int main(int argc, char** argv) {
    Verilated::commandArgs(argc, argv);
    VerilatedContext* const context = Verilated::threadContextp();
    const auto top = std::make_unique<Vtop>("");
    Verilated::fatalOnVpiError(false);

#if VM_TRACE
    std::unique_ptr<Trace> trace;
    if (const char* path = context->commandArgsPlusMatch("trace-file=")) {
        if (*path) {
            context->traceEverOn(true);
            trace = std::make_unique<Trace>();
            top->trace(trace.get(), 99);
            trace->open(path + sizeof("+trace-file=") - 1);
        }
    }
#endif

    top->clk = 0;
    vlog_startup_routines_bootstrap();
    VerilatedVpi::callCbs(cbStartOfSimulation);
    run_value_callbacks();

    uint64_t next_edge = CLOCK_HALF_PERIOD;
    bool fired = true;  // whether the last full step ran any callback
    while (!context->gotFinish()) {
        context->time(now);
        fired |= settle(*top);
#if VM_TRACE
        if (trace) trace->dump(now);
#endif
        if (context->gotFinish()) break;
        uint64_t deadline = VerilatedVpi::cbNextDeadline();  // ~0 when none is due
        if (!fired) {
            // Fast path, up to (not including) the deadline.
            while (next_edge < deadline) {
                now = next_edge;
                next_edge += CLOCK_HALF_PERIOD;
                top->clk = !top->clk;
                context->time(now);
                top->eval_step();
                if (run_value_callbacks()) {
                    settle(*top);
                    deadline = 0;  // leave the fast path, after this completed step
                    break;
                }
                top->eval_end_step();
#if VM_TRACE
                if (trace) trace->dump(now);
#endif
            }
            if (deadline == 0 || context->gotFinish()) {
                fired = true;
                continue;
            }
        }
        if (next_edge <= deadline) {
            now = next_edge;
            next_edge += CLOCK_HALF_PERIOD;
            top->clk = !top->clk;
        } else {
            now = deadline;
        }
        context->time(now);
        fired = VerilatedVpi::callCbs(cbNextSimTime);
        fired |= run_value_callbacks();
        if (now == deadline) {
            VerilatedVpi::callTimedCbs();
            fired = true;
        }
        fired |= run_value_callbacks();
    }

    VerilatedVpi::callCbs(cbEndOfSimulation);
    top->final();
#if VM_TRACE
    if (trace) trace->close();
#endif
    return context->errorCount() > 0 ? 1 : 0;
}
