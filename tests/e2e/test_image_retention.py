"""The image clean-up on the whole local runtime: after a model's first version is promoted, the
scheduled function (its worker, the local ECR, the Kubernetes stand-in with the shipped Role) keeps
the image the stable Deployment runs and says why."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.timeout(600)


def test_the_image_clean_up_keeps_what_serves_on_the_local_runtime(driver):
    # Given a model whose first version was promoted (its image pinned by digest on the stable)
    config = driver.model("e2e-retention", retention={"keep_promoted": 1})
    v1 = driver.run("e2e-retention", driver.dataset("e2e-retention", 1500, 11), "v1.csv")
    assert v1.status == "SUCCEEDED" and v1.record["status"] == "promoted"
    image = driver.image(config)
    digest = image.split("@", 1)[1]
    lam, ecr = driver.cloud.client("lambda"), driver.cloud.client("ecr")
    repository = image.split("@", 1)[0].split("/", 1)[1]
    before = {d["imageDigest"] for d in ecr.describe_images(repositoryName=repository)["imageDetails"]}

    # When the stack's clean-up runs as the schedule would, once as a dry run and once for real
    name = f"{driver.cloud.info.stack_name}-image-retention"
    reports = [
        json.loads(
            lam.invoke(FunctionName=name, Payload=json.dumps({"dry_run": dry}).encode())["Payload"].read()
        )
        for dry in (True, False)
    ]

    # Then it read every model's Deployments (through the shipped Role) and blocked on none, kept the
    # serving image for every reason that holds, and deleted nothing (every image here is young)
    for report in reports:
        assert report["blocked"] is None, report["blocked"]
        assert report["deleted"] == [] and report["failures"] == []
        kept = {entry["digest"]: entry["reasons"] for entry in report["kept"]}
        assert {
            "stable Deployment of e2e-retention",
            "promoted version 1 of e2e-retention (last 1)",
            "champion record of e2e-retention",
        } <= set(kept[digest])
        assert any("grace period" in reason for reason in kept[digest])
    after = {d["imageDigest"] for d in ecr.describe_images(repositoryName=repository)["imageDetails"]}
    assert digest in after and before <= after
    driver.retire(config)
