"""The engine: one run from a configuration to its results file (`run`), training and its step,
checkpoints and resuming, the warm-start point, reusing trained weights, evaluating a model
trained elsewhere, and the torchrun process group. It calls data, models, methods and suites,
and writes through `benchmark.results`."""
