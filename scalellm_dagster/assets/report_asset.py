"""A task's `model_selection_report` asset: the cost / accuracy / latency trade-off and the chosen student (flow
step 3)."""

from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult

from scalellm_dagster.assets import report_metadata, task_io
from scalellm_dagster.assets.conditions import follows_the_model
from scalellm_dagster.assets.task_branch import task_asset
from scalellm_dagster.flow import select_student, with_accuracy_vs_gold
from scalellm_dagster.flow.student_selection import GOLD_EVAL_ROWS
from scalellm_dagster.names import CORPUS, MODEL_SELECTION_REPORT, STUDENT_CANDIDATES, task_table
from scalellm_dagster.resources import TaskStore, TeacherResource
from scalellm_dagster.tasks_config import TaskSpec


def model_selection_report_asset(
    task: TaskSpec, candidates: AssetsDefinition, embeddings: AssetsDefinition
) -> AssetsDefinition:
    @task_asset(
        task,
        MODEL_SELECTION_REPORT,
        [candidates, embeddings],
        "selection",
        (
            "The cost / accuracy / latency trade-off: accuracy vs teacher labels per candidate with a "
            "fitted learning curve and forecasts, teacher cost and time vs a row-by-row baseline, the chosen student."
        ),
        automation_condition=follows_the_model(embeddings.key),
    )
    def model_selection_report(context: AssetExecutionContext, task_store: TaskStore, teacher: TeacherResource):
        return materialize_report(context, task, task_store, teacher)

    return model_selection_report


def materialize_report(
    context: AssetExecutionContext, task: TaskSpec, store: TaskStore, teacher: TeacherResource
) -> MaterializeResult:
    warehouse = store.warehouse
    scores = warehouse.read_df(f"SELECT * FROM {task_table(task, STUDENT_CANDIDATES)}")
    sample, X, y = store.valid_sample(task)
    key = task_io.candidates_inputs_key(task, sample, X, store.draw_id(task))
    kept = store.stored_report(task, key)
    if kept is not None:
        # The deployed model's choice stands: the corpus's size and the teacher's later spend (audits) change the
        # report's figures, but must not swap the student under predictions already made.
        context.log.info(f"same draw and task as the deployed model's report: kept ({kept})")
        return MaterializeResult(
            metadata={
                "model": "kept: same draw and task as the deployed model's report",
                "chosen_student": kept,
                "dagster/row_count": warehouse.row_count(task_table(task, MODEL_SELECTION_REPORT)),
            }
        )
    scores = scores.drop(columns="inputs_key", errors="ignore")
    spend = store.teacher_spend(task, teacher.effective_concurrency)
    corpus_rows = warehouse.row_count(CORPUS)
    selection = select_student(scores, X, y, task, corpus_rows, spend)
    gold = store.gold_labels(task)
    answered = store.sample_labels(task)  # suspects left out of training are still not held out
    held_out = None if gold is None else store.gold_eval_rows(task, gold, answered.index.to_numpy(), GOLD_EVAL_ROWS)
    teacher_vs_gold = None
    if held_out is not None:
        selection = with_accuracy_vs_gold(selection, scores, X, y, *held_out, seed=task.seed)
        teacher_vs_gold = task_io.teacher_accuracy_vs_gold(gold, answered.reset_index())
    written = warehouse.write_table(
        task_table(task, MODEL_SELECTION_REPORT),
        selection.report_table.assign(
            inputs_key=key, model_version=task_io.model_version(selection.choice.candidate, task, key)
        ),
    )
    summary = report_metadata.report_summary(task, selection, spend, corpus_rows, store.teacher_description(task))
    plots = report_metadata.report_plots(
        task, scores, selection, spend, corpus_rows, store.reports_dir(), teacher_vs_gold=teacher_vs_gold
    )
    context.log.info(
        f"chosen student for {task.name}: {selection.choice.candidate} ({selection.choice.cv_accuracy:.3f})"
    )
    return MaterializeResult(
        metadata={
            **report_metadata.report_metadata(
                selection,
                selection.report_table,
                written,
                spend,
                corpus_rows,
                summary,
                per_run=warehouse.ledger_by_run(task.name),
                plot_meta=plots,
            ),
            **report_metadata.noise_metadata(selection.noise),
        }
    )
