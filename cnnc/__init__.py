"""cnnc: a declarative CNN compiler. `cnnc.compiler` (spec -> checked graph -> plan, no numba),
`cnnc.runtime` (plan + numba kernels -> forward, backward, train) and `cnnc.cli`, the command
line above both. `cnnc.load(run_folder)` gives a trained model with `.predict(images)`."""

__version__ = "0.1.0"


def load(path, batch: int = 64):
    """The trained model of a run folder (`runs/lenet5`): see `cnnc.model`."""
    from cnnc.model import load as load_model

    return load_model(path, batch)
