"""grokkit: grokking experiments from the command line, on JAX and Flax."""

__version__ = "0.1.0"
