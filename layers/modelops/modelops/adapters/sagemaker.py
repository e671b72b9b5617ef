"""SageMaker training jobs (`TrainingJobs`) and the model registry (`ModelRegistry`) through boto3."""

from __future__ import annotations

from typing import Any

from modelops.adapters.aws import error_code
from modelops.ports import RegisteredVersion, TrainingJob

#: What CreateModelPackageGroup answers when the group already exists.
_GROUP_EXISTS = {"ValidationException", "ResourceInUse", "ConflictException"}


class SageMakerTrainingJobs:
    def __init__(self, client: Any) -> None:
        self.client = client

    def describe(self, name: str) -> TrainingJob:
        job = self.client.describe_training_job(TrainingJobName=name)
        return TrainingJob(
            name=job["TrainingJobName"],
            status=job.get("TrainingJobStatus", ""),
            secondary_status=job.get("SecondaryStatus"),
            failure_reason=job.get("FailureReason"),
            model_artifact=(job.get("ModelArtifacts") or {}).get("S3ModelArtifacts"),
        )


class SageMakerRegistry:
    def __init__(self, client: Any) -> None:
        self.client = client

    def ensure_group(self, group: str, description: str) -> None:
        try:
            self.client.create_model_package_group(
                ModelPackageGroupName=group, ModelPackageGroupDescription=description
            )
        except Exception as exc:
            if error_code(exc) not in _GROUP_EXISTS:
                raise

    def find_version(self, group: str, run_id: str) -> RegisteredVersion | None:
        """Newest first, every page (a retried RegisterModel finds its version on the first; an
        old run's, for `rollback --to`, may be further back)."""
        query: dict[str, Any] = {
            "ModelPackageGroupName": group,
            "SortBy": "CreationTime",
            "SortOrder": "Descending",
        }
        while True:
            existing = self.client.list_model_packages(**query)
            for package in existing.get("ModelPackageSummaryList", []):
                described = self.client.describe_model_package(ModelPackageName=package["ModelPackageArn"])
                if (described.get("CustomerMetadataProperties") or {}).get("run_id") == run_id:
                    return RegisteredVersion(
                        str(described["ModelPackageVersion"]), package["ModelPackageArn"]
                    )
            if not existing.get("NextToken"):
                return None
            query["NextToken"] = existing["NextToken"]

    def create_version(
        self, group: str, *, description: str, image: str, artifact: str, metadata: dict[str, str]
    ) -> RegisteredVersion:
        response = self.client.create_model_package(
            ModelPackageGroupName=group,
            ModelPackageDescription=description[:1000],
            ModelApprovalStatus="PendingManualApproval",
            InferenceSpecification={
                "Containers": [{"Image": image, "ModelDataUrl": artifact}],
                "SupportedContentTypes": ["application/json", "text/csv"],
                "SupportedResponseMIMETypes": ["application/json"],
            },
            CustomerMetadataProperties=metadata,
        )
        arn = response["ModelPackageArn"]
        version = self.client.describe_model_package(ModelPackageName=arn)["ModelPackageVersion"]
        return RegisteredVersion(str(version), arn)

    def set_approval(
        self, package_arn: str, status: str, description: str, metadata: dict[str, str] | None = None
    ) -> None:
        # The version's metadata (run_id above all: find_version reads it) is passed on whole, as
        # read, plus the new keys: an update that names no metadata must not lose it.
        current = self.client.describe_model_package(ModelPackageName=package_arn)
        merged = {**(current.get("CustomerMetadataProperties") or {}), **(metadata or {})}
        update: dict[str, Any] = {
            "ModelPackageArn": package_arn,
            "ModelApprovalStatus": status,
            "ApprovalDescription": description[:1000],
        }
        if merged:
            update["CustomerMetadataProperties"] = {k: str(v)[:256] for k, v in merged.items()}
        self.client.update_model_package(**update)
