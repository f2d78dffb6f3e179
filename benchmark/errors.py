"""User-facing errors: the CLI prints them as one line and exits with status 2."""


class BenchmarkError(Exception):
    """Bad input or missing data, explained in one line (what was expected, where)."""


class UnknownNameError(BenchmarkError):
    """A name that no registry holds; the message suggests the closest registered names."""


class ConfigError(BenchmarkError):
    """An unknown configuration key, or a value of the wrong type or range."""


class DataError(BenchmarkError):
    """Missing, incomplete or corrupt dataset files."""


class DivergedError(BenchmarkError):
    """Training produced a non-finite loss or non-finite weights; nothing is saved or evaluated."""
