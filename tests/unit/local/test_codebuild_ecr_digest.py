"""Guards for the moto ECR behaviour the local CodeBuild's push relies on (moto 5.2.5, in-process).

The push passes `imageDigest` (ECR's PutImage member: the manifest's digest) because moto computes
a different one when it is left out, and it checks tag immutability itself because moto answers an
immutable tag with ImageAlreadyExistsException where ECR answers ImageTagAlreadyExistsException.
If one of these guards fails after a moto upgrade, revisit `LocalCodeBuild._push`.
"""

from __future__ import annotations

import hashlib
import json

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from modelops_local import oci

REGION = "us-east-1"


def manifest(layer: str) -> bytes:
    document = {
        "schemaVersion": 2,
        "mediaType": oci.MEDIA_MANIFEST,
        "config": {"mediaType": oci.MEDIA_CONFIG, "digest": "sha256:" + "a" * 64, "size": 2},
        "layers": [{"mediaType": oci.MEDIA_LAYER_GZIP, "digest": "sha256:" + layer * 64, "size": 3}],
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


@pytest.fixture
def ecr(offline_aws):
    with mock_aws():
        client = boto3.client("ecr", region_name=REGION)
        client.create_repository(repositoryName="serving", imageTagMutability="IMMUTABLE")
        yield client


def test_moto_put_image_without_digest_does_not_report_the_manifest_digest(ecr):
    # Given a manifest and its real digest
    body = manifest("b")
    real = oci.sha256_digest(body)
    # When it is put without imageDigest
    pushed = ecr.put_image(
        repositoryName="serving",
        imageTag="t1",
        imageManifest=body.decode(),
        imageManifestMediaType=oci.MEDIA_MANIFEST,
    )
    # Then moto reports sha256 of the concatenated layer digests, not the manifest's (the reason for imageDigest)
    assert pushed["image"]["imageId"]["imageDigest"] != real
    assert (
        pushed["image"]["imageId"]["imageDigest"]
        == "sha256:" + hashlib.sha256(b"sha256:" + b"b" * 64).hexdigest()
    )


def test_moto_keeps_the_image_digest_it_is_given(ecr):
    # Given a manifest and its real digest
    body = manifest("c")
    real = oci.sha256_digest(body)
    # When it is put with imageDigest, as the local push does
    ecr.put_image(
        repositoryName="serving",
        imageTag="t1",
        imageManifest=body.decode(),
        imageManifestMediaType=oci.MEDIA_MANIFEST,
        imageDigest=real,
    )
    # Then DescribeImages and BatchGetImage report that digest and the manifest unchanged
    details = ecr.describe_images(repositoryName="serving", imageIds=[{"imageTag": "t1"}])["imageDetails"]
    assert details[0]["imageDigest"] == real
    image = ecr.batch_get_image(repositoryName="serving", imageIds=[{"imageTag": "t1"}])["images"][0]
    assert image["imageId"]["imageDigest"] == real and image["imageManifest"] == body.decode()


def test_moto_words_an_immutable_tag_conflict_as_image_already_exists(ecr):
    # Given a tag in an IMMUTABLE repository
    first = manifest("d")
    ecr.put_image(
        repositoryName="serving",
        imageTag="t1",
        imageManifest=first.decode(),
        imageDigest=oci.sha256_digest(first),
    )
    # When other content is put under the same tag
    other = manifest("e")
    with pytest.raises(ClientError) as error:
        ecr.put_image(
            repositoryName="serving",
            imageTag="t1",
            imageManifest=other.decode(),
            imageDigest=oci.sha256_digest(other),
        )
    # Then moto refuses it, but not with ECR's ImageTagAlreadyExistsException (so the push checks first)
    assert error.value.response["Error"]["Code"] == "ImageAlreadyExistsException"
