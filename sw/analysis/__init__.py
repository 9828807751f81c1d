"""Vulnerability and protection analyses of the models, their confidence intervals, reports and plots."""
