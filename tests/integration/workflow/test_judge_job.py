"""The judge job in the real state machine: a team image's candidate is scored by the stack's own
image, and the verdict is the judge's; a model trained by our own `train` gets no judge job."""

from __future__ import annotations

from tests.integration.workflow.test_workflow import run

TEAM_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/team-trainer:7"
# The team image's own evaluation.json: a score it does not have.
LIE = {"metric": "auc", "candidate": 0.99, "champion": None, "n_validation": 10}


def test_a_team_images_candidate_is_judged_by_our_image_and_the_verdict_is_the_judges(harness):
    # Given a champion in production and a model trained by a team image that claims 0.99
    harness.store().put_doc("churn", "CHAMPION", {"version": "1", "model_artifact": _champion(harness)})
    harness.training_evaluation = LIE
    harness.judge_evaluation = {"metric": "auc", "candidate": 0.70, "champion": 0.80, "n_validation": 60}

    # When the workflow runs
    arn = run(harness, training__image=TEAM_IMAGE)
    result = harness.wait(arn)

    # Then a second job of our image judged the team's model.tar.gz beside the champion
    assert result["status"] == "SUCCEEDED", (result, harness.states(arn))
    (_, image, _), (judge, judge_image, hyper) = harness.training_jobs
    assert image == TEAM_IMAGE
    assert judge_image == f"{harness.repo_uri}:train" and judge.endswith("-judge")
    assert hyper["modelops_judge"] == "true"
    states = harness.states(arn)
    assert states.index("StartJudge") < states.index("JudgeDone") < states.index("EvaluateModel")
    # And the verdict is the judge's (the candidate is worse), not the team's own 0.99
    assert "RecordRejection" in states and "RegisterModel" not in states
    history = harness.store().query_docs("churn", "HISTORY#")
    assert history[0]["status"] == "rejected"
    evaluate = [event for name, event in harness.invocations if name == "evaluate_model"]
    assert [e["action"] for e in evaluate] == ["prepare_judge", "evaluate"]


def test_a_failed_judge_fails_the_run_with_its_reason(harness):
    harness.judge_failure = "AlgorithmError: candidate model tm.tar.gz has task regression"
    arn = run(harness, training__image=TEAM_IMAGE)
    result = harness.wait(arn)
    states = harness.states(arn)
    assert "ExplainJudgeFailure" in states and "EvaluateModel" not in states
    assert result["status"] == "FAILED"
    assert "judge job" in result["cause"] and "has task regression" in result["cause"]


def test_a_model_trained_by_our_own_train_gets_no_judge_job(harness):
    # Given the built-in algorithm (no training.image)
    arn = run(harness)
    result = harness.wait(arn)

    # Then one training job ran, and EvaluateModel read its evaluation
    assert result["status"] == "SUCCEEDED", (result, harness.states(arn))
    assert len(harness.training_jobs) == 1
    states = harness.states(arn)
    assert "NeedsJudge" in states
    assert not [s for s in states if "Judge" in s and s != "NeedsJudge"]


def _champion(harness) -> str:
    from tests.integration.workflow.harness import BUCKET, model_tarball

    key = "models/churn/old/output/model.tar.gz"
    harness.upload(key, model_tarball({"metric": "auc", "candidate": 0.8, "champion": None}))
    return f"s3://{BUCKET}/{key}"
