"""Run backends: a config per backend that knows how to execute one model run."""
