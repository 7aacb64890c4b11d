"""The runtime's errors, in a module that imports nothing, so the command line can map them to
exit codes without loading numpy or numba."""


class DataError(Exception):
    """A data source that cannot be used; the message names the file and what is wrong."""


class CheckpointError(Exception):
    """A checkpoint that cannot be read or does not fit this network; the message names the file."""


class TrainingError(Exception):
    """Training cannot go on (NaN, a spec/data mismatch); the message says why and where."""


class ResourceError(Exception):
    """What a command needs is more than the machine (or ``--max-memory``) allows; the message
    says how much it needs and what would fit."""
