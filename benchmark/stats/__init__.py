"""Statistics as pure functions: intervals, paired tests and Holm's adjustment (`intervals`),
rank correlations with bootstrap intervals and permutation tests (`correlation`), and the
relation between attribution agreement and background robustness across models (`relation`)."""
