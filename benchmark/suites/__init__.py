"""Evaluation suites, registered in SUITES: accuracy, robustness, ... (one module each)."""
