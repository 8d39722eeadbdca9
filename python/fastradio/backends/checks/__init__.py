"""Argument checks of the ops, shared by the fast backends (triton, cuda): one module per op,
``checks/<op>.py``, so both backends accept and refuse exactly the same inputs with the same
messages (what was expected, what came). Checks that depend on a backend's kernels (e.g. which
head dims a tier was compiled for) stay in that backend."""
