"""The course's side: check a whole Moodle download of hw3 submissions into one page.

``python -m hw3grade SOURCE [--out DIR] [--jobs N] [--rerun]`` (or ``invoke grade``). The submission rules
are hw3build.submission.validate's, read through hw3build.submission.bounded; this package adds discovery, the grader's facts,
checks across submissions, the parallel runner and the page. It imports hw3build and hw3, never the reverse.
"""
