"""The assignment's fixed names, declared once: its questions and tasks (titles, in order), the theory file
that answers each question, and the names of the submitted files.

Everything that prints, finds or checks a heading (the notebook templates, the report, the validator) and
everything that names a submitted file takes it from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

COURSE = "ECE 046211"
COURSE_TITLE = "ECE 046211 - Technion - Deep Learning"
HOMEWORK_TITLE = "HW3 - Sequential Tasks and Training Methods"
PART1_TITLE = "Part 1 - Theory"
PART2_TITLE = "Part 2 - Code Assignments"


@dataclass(frozen=True)
class Heading:
    """One question or task: ``label`` ("Question 1", "Task 4"), ``title``, and for a question the theory
    file that answers it."""

    label: str
    title: str
    theory_file: str | None = None
    short: str = ""  # "Q1", "T4": how an answer index refers to it

    @property
    def text(self) -> str:
        """``"Task 4 - Train and Evaluate the Language Model"``, as the assignment writes it."""
        return f"{self.label} - {self.title}"


QUESTIONS: tuple[Heading, ...] = (
    Heading("Question 1", "Transformers Efficiency", "q1.tex", "Q1"),
    Heading("Question 2", "Preventing Variance Explosion", "q2.tex", "Q2"),
    Heading("Question 3", "Recurrent Neural Networks", "q3.tex", "Q3"),
)
TASKS: tuple[Heading, ...] = (
    Heading("Task 1", "Loading and Observing the Data", short="T1"),
    Heading("Task 2", "Preparing the Data - Separating to Inputs and Targets", short="T2"),
    Heading("Task 3", "Define Hyperparameters and Initialize the Model", short="T3"),
    Heading("Task 4", "Train and Evaluate the Language Model", short="T4"),
    Heading("Task 5", "Generate Sentences", short="T5"),
)
HEADINGS: tuple[Heading, ...] = QUESTIONS + TASKS

# The parts of the questions, in order: (key, what it asks, in a few words). The report's answer index has
# one row per part (the theory answers put \label{ans:<key>} at each part's answer) and one per task.
QUESTION_PARTS: tuple[tuple[str, str], ...] = (
    ("q1.1", "an example use of an encoder-decoder Transformer"),
    ("q1.2", "positional encoding, AddNorm, feed forward"),
    ("q1.3", "encoder versus decoder"),
    ("q1.4", "multiplications of one self-attention layer"),
    ("q1.5", "Equation 3 is Equation 2"),
    ("q2", "an initialization scheme with skip connections"),
    ("q3.1", "the exact gradient by BPTT"),
    ("q3.2", "the two problems as t grows, and their remedies"),
)
ANSWER_LABELS = tuple(f"ans:{key}" for key, _ in QUESTION_PARTS)  # each \label-ed in theory/*.tex

SUBMISSION_PREFIX = "ece046211_hw3"
STUDENT_ID = re.compile(r"^\d{9}$")
ZIP_NAME = re.compile(rf"^{SUBMISSION_PREFIX}_(\d{{9}})_(\d{{9}})\.zip$")


def submission_stem(id1: str, id2: str) -> str:
    """``ece046211_hw3_<id1>_<id2>``: the stem of the zip and of both files inside it."""
    for id_number in (id1, id2):
        if not (isinstance(id_number, str) and STUDENT_ID.match(id_number)):
            raise ValueError(f"student id {id_number!r} must be a string of exactly 9 digits")
    return f"{SUBMISSION_PREFIX}_{id1}_{id2}"


def submission_members(id1: str, id2: str) -> tuple[str, str]:
    """The two files the zip holds, in order: the executed notebook and the PDF."""
    stem = submission_stem(id1, id2)
    return f"{stem}.ipynb", f"{stem}.pdf"
