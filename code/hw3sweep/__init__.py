"""Tuning as an Optuna study: the assignment's box (``hw3.hparams.BOX``) searched on validation
perplexity by any number of worker processes on one or many machines.

``python -m hw3sweep`` (``invoke sweep``) runs, reports and applies a study; trials train with the
same functions as everything else (``hw3.train.fit``, ``hw3.data.load_splits``). ``hw3`` never
imports this package, and it is never inlined into the notebook.
"""
