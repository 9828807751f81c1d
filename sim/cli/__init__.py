"""The softerror command: argument parsing, tables and JSON output over the simulation library."""
