"""The build system of the hw3 submission: config, notebook rendering and execution, the PDF report, the
zip and its validation. It calls into ``hw3``; ``hw3`` never imports it.

Entry points: ``invoke build|validate|test|clean|bench|theory`` (tasks.py), or
``python -m hw3build build|validate|clean|theory|report`` (:mod:`hw3build.cli`), which the tasks call.
"""

__version__ = "0.1.0"
