"""The report: the theory stage (``theory``, ``formulas``), the executed notebook as LaTeX (``nbtex``), the
report's context and index (``report_context``, ``support_index``), TeX itself (``latex``), the PDF
(``report``)."""
