"""Saliency-robustness benchmark: does a training method make a classifier rely on the object?

The engine: registries, configuration, models, training, attacks, evaluation suites, the result
store and the CLI. Built-in methods live in `benchmark_methods`, datasets in `benchmark_datasets`.
"""

__version__ = "0.1.0"
