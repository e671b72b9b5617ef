"""The serving repository's ECR lifecycle policy, read from template.yaml, cannot expire a serving image.

ECR applies the policy on AWS only (moto and the local runtime apply none), so the rule text is
judged here by a small evaluator of ECR's documented semantics (Amazon ECR User Guide, "Lifecycle
policy properties" and "How lifecycle policies work" / evaluation rules):

- rules apply in `rulePriority` order, lowest first; an image is expired by one rule or none;
- an image that matches the tag selection of a higher-priority rule cannot be expired by a
  lower-priority one (which still counts it, as if it were not expired);
- `tagStatus`: `tagged` (needs `tagPrefixList` or `tagPatternList`), `untagged` (neither), `any`
  (must be the highest `rulePriority`); only one rule may select untagged images;
- `tagPrefixList` / `tagPatternList` (`*` wildcards): an image is selected when every listed
  prefix/pattern matches one of its tags;
- `imageCountMoreThan`: the selected images sorted newest first by push time, those past
  `countNumber` expire; `sinceImagePushed` (`countUnit` days): those pushed more than
  `countNumber` days ago expire.

A serving image is tagged by the build (`steps.build.image_tag`: `<model>-v<version>-<run>`) and
pinned by digest. The check builds the worst case for each rule: a serving image of a model whose
name fits the rule's prefixes, pushed years ago, behind more younger images of every kind than any
rule counts, and asks whether the policy expires it.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode.cfn_yaml import load
from modelops.steps.build import image_tag

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 4, tzinfo=UTC)
#: What the serving repository's policy was until issue 15 (keep the newest 50 images, any tag).
OLD_POLICY = (
    '{"rules":[{"rulePriority":1,"description":"keep the last 50 images","selection":'
    '{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":50},"action":{"type":"expire"}}]}'
)
#: The tags steps.build.image_tag makes (model names: config._MODEL_NAME).
SERVING_TAG = re.compile(r"[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?-v\d+-[A-Za-z0-9_.\-]{1,8}")


@dataclass(frozen=True)
class Image:
    digest: str
    tags: tuple[str, ...]
    pushed_at: datetime


class PolicyError(ValueError):
    pass


def _validate(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The structural rules ECR checks when a policy is put (lifecycle policy properties)."""
    priorities = [r["rulePriority"] for r in rules]
    if len(set(priorities)) != len(priorities):
        raise PolicyError("rulePriority values must be unique")
    ordered = sorted(rules, key=lambda r: r["rulePriority"])
    untagged = 0
    for i, rule in enumerate(ordered):
        sel = rule["selection"]
        lists = [k for k in ("tagPrefixList", "tagPatternList") if sel.get(k)]
        if sel["tagStatus"] == "tagged" and not lists:
            raise PolicyError("tagStatus tagged needs tagPrefixList or tagPatternList")
        if sel["tagStatus"] == "untagged" and lists:
            raise PolicyError("tagStatus untagged must omit tagPrefixList and tagPatternList")
        if sel["tagStatus"] == "any" and i != len(ordered) - 1:
            raise PolicyError("a rule with tagStatus any must have the highest rulePriority")
        untagged += sel["tagStatus"] == "untagged"
        if sel["countType"] not in ("imageCountMoreThan", "sinceImagePushed"):
            raise PolicyError(f"countType {sel['countType']} is not modelled here")
        if sel["countType"] == "sinceImagePushed" and sel.get("countUnit") != "days":
            raise PolicyError("sinceImagePushed needs countUnit days")
        if rule["action"]["type"] != "expire":
            raise PolicyError("only the expire action is modelled here")
    if untagged > 1:
        raise PolicyError("only one rule may select untagged images")
    return ordered


def _selects(selection: dict[str, Any], image: Image) -> bool:
    status = selection["tagStatus"]
    if status == "untagged":
        return not image.tags
    if status == "any":
        return True
    if not image.tags:
        return False
    prefixes = selection.get("tagPrefixList") or []
    patterns = selection.get("tagPatternList") or []
    return all(any(t.startswith(p) for t in image.tags) for p in prefixes) and all(
        any(fnmatch.fnmatchcase(t, p) for t in image.tags) for p in patterns
    )


def expired(policy_text: str, images: list[Image], now: datetime = NOW) -> set[str]:
    """The digests ECR's lifecycle policy would expire from `images` (module docstring)."""
    rules = _validate(json.loads(policy_text)["rules"])
    claimed: set[str] = set()  # matched the tag selection of a higher-priority rule
    gone: set[str] = set()
    for rule in rules:
        sel = rule["selection"]
        selected = [i for i in images if _selects(sel, i)]
        if sel["countType"] == "imageCountMoreThan":
            newest_first = sorted(selected, key=lambda i: i.pushed_at, reverse=True)
            candidates = newest_first[sel["countNumber"] :]
        else:
            limit = timedelta(days=sel["countNumber"])
            candidates = [i for i in selected if now - i.pushed_at > limit]
        gone.update(i.digest for i in candidates if i.digest not in claimed)
        claimed.update(i.digest for i in selected)
    return gone


def _serving_tags(rules: list[dict[str, Any]]) -> list[str]:
    """Serving tags to put at risk: ordinary ones, and for each prefix or pattern a rule lists, the
    tag of a model named to fit it (when a model name can)."""
    tags = [image_tag("churn", "1", "run-00000001"), image_tag("m00", "12", "exec-abcdefgh")]
    for rule in rules:
        sel = rule["selection"]
        for text in [*(sel.get("tagPrefixList") or []), *(sel.get("tagPatternList") or [])]:
            stem = text.replace("*", "x")
            for candidate in (f"{stem}x-v1-run00001", f"{stem}1-run0001", f"{stem}-run0001", stem):
                if SERVING_TAG.fullmatch(candidate):
                    tags.append(candidate)
                    break
    return tags


def serving_images_at_risk(policy_text: str) -> list[str]:
    """The serving tags the policy expires in the worst case: each serving image pushed ten years
    ago, behind more younger images than any rule counts (tagged like builds, like each listed
    prefix, and untagged)."""
    rules = json.loads(policy_text)["rules"]
    most = max([r["selection"].get("countNumber", 0) for r in rules] + [0]) + 1
    serving = _serving_tags(rules)
    young_tags = [
        *serving,
        *(p.replace("*", "x") for r in rules for p in r["selection"].get("tagPrefixList") or []),
    ]
    at_risk = []
    for n, tag in enumerate(serving):
        target = Image(f"sha256:serving-{n}", (tag,), NOW - timedelta(days=3650))
        others = [
            Image(f"sha256:young-{k}-{j}", (f"{young}-{j}",) if young else (), NOW - timedelta(minutes=j + 1))
            for k, young in enumerate([*young_tags, ""])
            for j in range(most)
        ]
        if target.digest in expired(policy_text, [target, *others]):
            at_risk.append(tag)
    return at_risk


def _policy(resource: str) -> str:
    template = load(str(ROOT / "template.yaml"))
    return str(template["Resources"][resource]["Properties"]["LifecyclePolicy"]["LifecyclePolicyText"])


# --- the template ------------------------------------------------------------------------------------
def test_the_serving_repository_policy_cannot_expire_a_serving_image() -> None:
    props = load(str(ROOT / "template.yaml"))["Resources"]["ServingImageRepository"]["Properties"]
    assert props["ImageTagMutability"] == "IMMUTABLE"  # a serving image keeps the tag it was built with
    assert serving_images_at_risk(_policy("ServingImageRepository")) == []


def test_the_check_catches_the_old_keep_50_rule() -> None:
    assert serving_images_at_risk(OLD_POLICY) == _serving_tags(json.loads(OLD_POLICY)["rules"])


def test_the_old_rule_expired_a_rarely_retrained_models_serving_image() -> None:
    # Given model m00 built once 200 days ago and 59 builds of other models since (issue 15)
    images = [Image("sha256:m00", (image_tag("m00", "1", "run-00000001"),), NOW - timedelta(days=200))]
    images += [
        Image(
            f"sha256:b{n}",
            (image_tag(f"m{1 + n % 19:02d}", str(n), f"run-{n:08d}"),),
            NOW - timedelta(days=199 - 3 * n),
        )
        for n in range(59)
    ]
    # Then the old rule expires m00's serving image (and 9 others); the template's expires none
    assert "sha256:m00" in expired(OLD_POLICY, images)
    assert len(expired(OLD_POLICY, images)) == 10
    assert expired(_policy("ServingImageRepository"), images) == set()


@pytest.mark.parametrize(
    "selection, at_risk",
    [
        (
            {
                "tagStatus": "tagged",
                "tagPrefixList": ["churn"],
                "countType": "imageCountMoreThan",
                "countNumber": 500,
            },
            True,
        ),
        (
            {
                "tagStatus": "tagged",
                "tagPatternList": ["*-v*"],
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 365,
            },
            True,
        ),
        (
            {
                "tagStatus": "tagged",
                "tagPrefixList": ["Release_"],
                "countType": "imageCountMoreThan",
                "countNumber": 5,
            },
            False,
        ),
        ({"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1}, False),
        (
            {"tagStatus": "any", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 3000},
            True,
        ),
    ],
)
def test_the_check_judges_other_rules(selection: dict[str, Any], at_risk: bool) -> None:
    policy = json.dumps(
        {"rules": [{"rulePriority": 1, "selection": selection, "action": {"type": "expire"}}]}
    )
    assert bool(serving_images_at_risk(policy)) is at_risk


# --- the evaluator against the documented semantics ----------------------------------------------------
def _img(name: str, tags: tuple[str, ...], days_old: float) -> Image:
    return Image(name, tags, NOW - timedelta(days=days_old))


def test_count_rules_expire_the_oldest_beyond_the_count() -> None:
    images = [_img(f"u{n}", (), n) for n in range(5)]
    policy = '{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":2},"action":{"type":"expire"}}]}'
    assert expired(policy, images) == {"u2", "u3", "u4"}


def test_age_rules_expire_images_pushed_before_the_limit() -> None:
    images = [_img("old", ("a",), 15), _img("new", ("a",), 13), _img("loose", (), 30)]
    policy = '{"rules":[{"rulePriority":1,"selection":{"tagStatus":"tagged","tagPatternList":["a"],"countType":"sinceImagePushed","countUnit":"days","countNumber":14},"action":{"type":"expire"}}]}'
    assert expired(policy, images) == {"old"}


def test_every_listed_prefix_must_match_one_of_the_images_tags() -> None:
    images = [_img("both", ("prod-1", "beta-1"), 10), _img("one", ("prod-2",), 10)]
    policy = '{"rules":[{"rulePriority":1,"selection":{"tagStatus":"tagged","tagPrefixList":["prod","beta"],"countType":"sinceImagePushed","countUnit":"days","countNumber":1},"action":{"type":"expire"}}]}'
    assert expired(policy, images) == {"both"}


def _rule(
    priority: int, status: str, number: int, *, age: bool = False, **lists: list[str]
) -> dict[str, Any]:
    """One rule: `age` for sinceImagePushed (days), else imageCountMoreThan."""
    selection: dict[str, Any] = {"tagStatus": status, **lists, "countNumber": number}
    selection.update(
        {"countType": "sinceImagePushed", "countUnit": "days"} if age else {"countType": "imageCountMoreThan"}
    )
    return {"rulePriority": priority, "selection": selection, "action": {"type": "expire"}}


def test_an_image_a_higher_priority_rule_selects_is_never_expired_by_a_lower_one() -> None:
    # rule 1 keeps 9999 prod images (expires none); rule 2 (any, age 1 day) cannot take them
    images = [_img("prod", ("prod-1",), 100), _img("dev", ("dev-1",), 100), _img("fresh", ("dev-2",), 0.5)]
    rules = [_rule(1, "tagged", 9999, tagPrefixList=["prod"]), _rule(2, "any", 1, age=True)]
    assert expired(json.dumps({"rules": rules}), images) == {"dev"}


@pytest.mark.parametrize(
    "rules, message",
    [
        ([_rule(1, "tagged", 1)], "tagPrefixList or tagPatternList"),
        ([_rule(1, "any", 1), _rule(2, "tagged", 1, tagPrefixList=["a"])], "highest rulePriority"),
        ([_rule(1, "untagged", 1), _rule(1, "tagged", 1, tagPrefixList=["a"])], "unique"),
        ([_rule(1, "untagged", 1, tagPrefixList=["a"])], "must omit"),
        ([_rule(1, "untagged", 1), _rule(2, "untagged", 2)], "only one rule"),
    ],
)
def test_policies_ecr_refuses_are_refused(rules: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        expired(json.dumps({"rules": rules}), [])
