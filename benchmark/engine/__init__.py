"""The engine: one run from a configuration to its results file (`run`), training and its step,
evaluation and the suite contract, saving what a run measured (`saving`), starting weights and
reusing trained ones, and evaluating a model trained elsewhere. It calls data, models, methods and
suites through the registries and writes through `benchmark.results`."""
