"""How long the local CodeBuild takes to build one serving image, start to COMPLETED.

    .venv/bin/python tools/local_build_time.py [--rounds 5] [--trees 100]

Trains a churn model with the serving image's own `train` (HistGradientBoosting, `--trees`
iterations: the native predictor's C compile is part of every build), then, under moto's
in-process mock, uploads the source zip and the model.tar.gz as the stack does and runs
`--rounds` builds of it through `LocalCodeBuild.start` (each with a new tag), printing each
build's wall time and the median. Rerun it on two commits to compare.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"


def train_model(base: Path, trees: int) -> bytes:
    from modelops_local.sample_data import CHURN_FEATURES, CHURN_LABEL, generate_churn_csv

    generate_churn_csv(base / "input" / "data" / "train" / "churn.csv", 2000, seed=1)
    hyper = {
        "label_column": CHURN_LABEL,
        "feature_columns": json.dumps(list(CHURN_FEATURES)),
        "max_iter": str(trees),
    }
    (base / "input" / "config").mkdir(parents=True)
    (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyper))
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "TRAINING_JOB_NAME": "bench"}
    subprocess.run(
        [sys.executable, str(ROOT / "serving_image" / "bin" / "train")], env=env, check=True, timeout=600
    )
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted((base / "model").rglob("*")):
            tar.add(path, arcname=str(path.relative_to(base / "model")), recursive=False)
    return buf.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--trees", type=int, default=100)
    args = parser.parse_args()
    for key, value in {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        os.environ[key] = value
    os.environ.pop("AWS_ENDPOINT_URL", None)
    from moto import mock_aws

    from modelops_local.aws_server import InProcessAws
    from modelops_local.codebuild import LocalCodeBuild, package_source

    with tempfile.TemporaryDirectory(prefix="build-time-") as tmp, mock_aws():
        work = Path(tmp)
        model = train_model(work / "job", args.trees)
        clients = InProcessAws(REGION)
        s3, ecr, iam, codebuild = (clients.client(n) for n in ("s3", "ecr", "iam", "codebuild"))
        s3.create_bucket(Bucket="bench")
        s3.put_object(
            Bucket="bench", Key="source/serving_image.zip", Body=package_source(ROOT / "serving_image")
        )
        s3.put_object(Bucket="bench", Key="model.tar.gz", Body=model)
        uri = ecr.create_repository(repositoryName="bench")["repository"]["repositoryUri"]
        role = iam.create_role(RoleName="cb", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        codebuild.create_project(
            name="bench",
            source={"type": "S3", "location": "bench/source/serving_image.zip", "buildspec": "buildspec.yml"},
            artifacts={"type": "NO_ARTIFACTS"},
            environment={
                "type": "LINUX_CONTAINER",
                "image": "aws/codebuild/standard:7.0",
                "computeType": "BUILD_GENERAL1_SMALL",
                "environmentVariables": [{"name": "IMAGE_REPOSITORY_URI", "value": uri}],
            },
            serviceRole=role,
        )
        builder = LocalCodeBuild(clients, layout_dir=work / "layout", work_dir=work / "builds")
        times = []
        try:
            for i in range(args.rounds):
                started = time.perf_counter()
                build = builder.start(
                    {
                        "projectName": "bench",
                        "environmentVariablesOverride": [
                            {"name": "MODEL_ARTIFACT_S3_URI", "value": "s3://bench/model.tar.gz"},
                            {"name": "IMAGE_TAG", "value": f"bench-{i}"},
                        ],
                    }
                )
                doc = builder.wait(build["id"], 600)
                times.append(time.perf_counter() - started)
                if doc["buildStatus"] != "SUCCEEDED":
                    print(builder.log_path(build["id"]).read_text(), file=sys.stderr)
                    raise SystemExit(f"build {i} {doc['buildStatus']}")
                print(f"build {i}: {times[-1]:.2f} s")
                if os.environ.get("BUILD_TIME_LOG"):
                    print(builder.log_path(build["id"]).read_text())
        finally:
            builder.shutdown(30)
        print(f"median of {len(times)}: {statistics.median(times):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
