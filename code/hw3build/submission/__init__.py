"""The submission: the students' config (``config``), their text as typed (``literal``), the assignment's
names and rules (``assignment``), the zip (``package``) and its check (``validate``)."""
