"""The built-in evaluation suites, one module each, registered in SUITES: clean accuracy per
split and variant, robustness to attacks confined to a region, corruptions, and attribution
agreement with object masks. Each implements the suite contract of benchmark/engine/evaluate.py."""
