"""A module that fails while being imported."""
raise RuntimeError("cannot import this module")
