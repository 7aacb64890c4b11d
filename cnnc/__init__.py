"""cnnc: a declarative CNN compiler. `cnnc.compiler` (spec -> checked graph -> plan, no numba),
`cnnc.runtime` (plan + numba kernels -> forward, backward, train) and `cnnc.cli`, the command
line above both."""

__version__ = "0.1.0"
