"""The notebook: rendered from the templates and the ``hw3`` source (``render``, ``inline``), its schema
(``schema``), its parameters (``parameters``), executed by papermill under time limits (``execute``,
``engine``), cached by what it computes (``cache``) in run folders (``runs``, ``manifest``)."""
