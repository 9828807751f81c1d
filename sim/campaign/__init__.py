"""Fault-injection campaigns: plan, workload, worker, outcomes, statistics, SQLite store and the engine."""
