"""Tooling shared by the build (``hw3build``), the tuner (``hw3sweep``) and the training command line:
the repository's paths and git state, cross-process locks, where a tuning study lives.

Never inlined into the notebook. It imports ``hw3`` (the training command line runs the homework's
functions) and nothing else of ours; ``hw3build`` and ``hw3sweep`` may import it, ``hw3`` never does.
"""
