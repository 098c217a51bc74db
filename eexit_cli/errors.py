"""Exceptions raised by the library; the CLI turns them into one-line messages.

Core functions raise ``ValueError`` for bad arguments. The I/O layer raises
:class:`InputError` for files that cannot be used, naming the file and dataset.
"""


class EexitError(Exception):
    """Base class of every error that the command line reports as one line."""


class InputError(EexitError, ValueError):
    """A file, dataset, option or value that cannot be used as given."""


class InfeasibleBudgetError(EexitError, ValueError):
    """No thresholds can meet the requested budget (or certify it)."""


class MissingDependencyError(EexitError, ImportError):
    """An optional dependency needed by the requested feature is not installed."""


class DeviceUnavailableError(EexitError, RuntimeError):
    """The requested device (e.g. CUDA) cannot be used on this machine."""
