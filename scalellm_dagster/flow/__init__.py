"""The ScaleLLM flow, step by step, without Dagster: both front ends (the assets and `scalellm bench`) call it.

1. `sample.label_sample`        choose the rows for the teacher and label them (through a cache)
   `suspects.review_suspects`   flag teacher labels the students find implausible; keep, re-ask or drop them
2. `candidates.evaluate_students` every candidate student at several sample sizes
3. `student_selection.select_student`
                                the chosen student, the trade-off table, calibration and budget advice
4. `predict.predict_rows`       the student's label and confidence for every row; `final_labels` keeps the
                                teacher's labels on the rows it answered
5. `cascade_step.run_cascade`   the rows the student is least sure of, sent back to the teacher

Each step takes plain inputs (arrays, frames, the task spec, a teacher session) and returns a small typed result.
"""

from scalellm_dagster.flow.candidates import Candidates, evaluate_students
from scalellm_dagster.flow.cascade_step import CascadeOutcome, NewRowsCascade, calibrate, cascade_new_rows, run_cascade
from scalellm_dagster.flow.predict import Predicted, TrainedStudent, final_labels, predict_rows, train_student
from scalellm_dagster.flow.sample import LabelledSample, initial_sample_ids, label_sample
from scalellm_dagster.flow.session import AnswerCache, MemoryCache, TeacherSession
from scalellm_dagster.flow.student_selection import Selection, select_student, with_accuracy_vs_gold
from scalellm_dagster.flow.suspects import SuspectReview, review_suspects

__all__ = [
    "AnswerCache",
    "Candidates",
    "CascadeOutcome",
    "LabelledSample",
    "MemoryCache",
    "NewRowsCascade",
    "Predicted",
    "Selection",
    "SuspectReview",
    "TeacherSession",
    "TrainedStudent",
    "calibrate",
    "cascade_new_rows",
    "evaluate_students",
    "final_labels",
    "initial_sample_ids",
    "label_sample",
    "predict_rows",
    "review_suspects",
    "run_cascade",
    "select_student",
    "train_student",
    "with_accuracy_vs_gold",
]
