"""ECE 046211 HW3: a word-level Transformer language model on WikiText-2.

The homework itself (data, model, training, generation, plots, theory checks). It knows nothing of
the build system (``hw3build``); the build inlines this package's source into the
submitted notebook.
"""

__version__ = "0.1.0"
