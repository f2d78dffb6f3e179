"""Saliency-robustness benchmark: does a training method make a classifier rely on the object?

The engine: registries, configuration, models, training, attacks, evaluation suites, the result
store and the CLI. Built-in methods live in `benchmark_methods`, datasets in `benchmark_datasets`.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """`benchmark.evaluate_model`, imported on first use (the package itself stays light to import)."""
    if name == "evaluate_model":
        from benchmark.engine.external_evaluation import evaluate_model

        return evaluate_model
    raise AttributeError(f"module 'benchmark' has no attribute {name!r}")
