"""The real serving image end to end: trained by serving_image/bin/train, built as an OCI image,
unpacked, run by the local controller from the real manifests, predicting through its Service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from kube_pods import wait_for
from modelops.deployments import rollout_status

from modelops_local import oci
from modelops_local.kube import KubeStore
from modelops_local.kube.controller import LocalController
from modelops_local.kube.services import ServiceProxies
from modelops_local.manifests import render_manifests
from modelops_local.sample_data import CHURN_FEATURES, CHURN_LABEL, generate_churn_csv

ROOT = Path(__file__).resolve().parents[4]
SERVING_IMAGE = ROOT / "serving_image"
REPOSITORY = "123456789012.dkr.ecr.us-east-1.amazonaws.com/churn"


def _train(base: Path) -> Path:
    (base / "input" / "config").mkdir(parents=True)
    hyperparameters = {
        "label_column": CHURN_LABEL,
        "feature_columns": json.dumps(list(CHURN_FEATURES)),
        "max_iter": "10",
    }
    (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    generate_churn_csv(base / "input" / "data" / "train" / "customers.csv", 200, seed=5)
    subprocess.run(
        [sys.executable, str(SERVING_IMAGE / "bin" / "train")],
        env={**os.environ, "SAGEMAKER_BASE_DIR": str(base)},
        check=True,
        capture_output=True,
        timeout=60,
    )
    return base / "model"


def test_the_real_image_serves_predictions_through_the_service(tmp_path):
    # Given a model trained by the real `train`, built into an OCI image and unpacked as its rootfs
    model_dir = _train(tmp_path / "ml")
    layers, config = oci.serving_image_spec(SERVING_IMAGE, model_dir)
    built = oci.build_image(tmp_path / "oci", REPOSITORY, "v1", layers, config)
    rootfs = oci.unpack_image(tmp_path / "oci", built.digest, tmp_path / "rootfs")

    def images(reference: str) -> Path:
        if reference != built.reference:
            raise LookupError(f"manifest unknown: {reference}")
        return rootfs

    # And the real manifests (stable Deployment of 2, the Services) in the store
    store = KubeStore()
    objects = render_manifests("churn", "models", built.reference, "v1", 2)
    for obj in objects:
        if obj["kind"] in ("Namespace", "Service") or (
            obj["kind"] == "Deployment" and obj["metadata"]["name"] == "churn-stable"
        ):
            store.create(obj)
    lines: list[str] = []
    controller = LocalController(
        store,
        images,
        state_dir=tmp_path / "state",
        on_stdout_line=lambda _meta, line: lines.append(line),
        # the manifests' probes at half their periods: a startup budget of 30 s (60 s in the
        # manifest), which a loaded host needs (at 0.2, 12 s, real pods were killed at startup
        # again and again beside other tests); a probe still comes every second
        probe_scale=0.5,
        backoff_scale=0.05,
        max_grace_seconds=3,
    )
    proxies = ServiceProxies(store).start()
    controller.start()
    try:
        # When the controller runs it
        def done() -> bool:
            deployment = store.get("deployments", "models", "churn-stable")
            return rollout_status(deployment, container="model", expected_image=built.reference).done

        wait_for("churn-stable rolled out", done, 60, interval=0.1)
        # Then both pods are Ready and the Service answers predictions
        assert len(proxies.endpoints("models", "churn")) == 2
        request = urllib.request.Request(
            proxies.url("models", "churn") + "/invocations",
            data=b"12,80,3,20,1,1\n2,95,6,5,1,3",
            headers={"Content-Type": "text/csv"},
            method="POST",
        )
        for _ in range(4):
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = json.loads(response.read())
            assert len(answer["predictions"]) == 2 and set(answer["predictions"]) <= set(answer["classes"])
            assert all(0 <= p <= 1 for row in answer["probabilities"] for p in row)
            assert answer["model_version"] == "v1"
        # And the pods' EMF lines (the metrics CloudWatch gets) reach on_stdout_line, labelled by the manifests' env
        emf = wait_for("an EMF line", lambda: [line for line in lines if '"_aws"' in line], 10)
        document = json.loads(emf[0])
        assert document["Model"] == "churn" and document["Variant"] == "stable"
    finally:
        controller.stop(timeout=10)
        proxies.stop()
    assert controller.pids() == []
