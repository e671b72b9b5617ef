"""CloudFormation intrinsics, conditions and dependency order, as the local stack resolves them."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from modelops_local.intrinsics import (
    NO_VALUE,
    DependencyCycleError,
    IntrinsicError,
    Resolver,
    TemplateError,
    dependency_order,
    references,
    resource_dependencies,
)

CREATED = {
    "Bucket": ("data-bucket", {"Arn": "arn:aws:s3:::data-bucket"}),
    "Fn": ("stack-greet", {"Arn": "arn:aws:lambda:us-east-1:123456789012:function:stack-greet"}),
}


def resolver(conditions: dict[str, Any] | None = None, **parameters: Any) -> Resolver:
    def ref(name: str) -> str:
        return CREATED[name][0]

    def get_att(name: str, attribute: str) -> Any:
        if name not in CREATED:
            raise KeyError(f"unknown resource {name!r}")
        attributes = CREATED[name][1]
        if attribute not in attributes:
            raise KeyError(f"no attribute {attribute!r}")
        return attributes[attribute]

    return Resolver(
        parameters={"Stage": "dev", "Count": "3", **parameters},
        pseudo={
            "AWS::StackName": "stack",
            "AWS::Region": "us-east-1",
            "AWS::AccountId": "123456789012",
            "AWS::Partition": "aws",
        },
        conditions=conditions or {},
        mappings={"Sizes": {"dev": {"Memory": 256}}},
        ref=ref,
        get_att=get_att,
    )


def test_ref_reads_parameters_pseudo_parameters_and_resources():
    # Given parameters, pseudo parameters and a created resource
    r = resolver()
    # When each is referenced
    values = [r.resolve({"Ref": name}, "Resources.X") for name in ("Stage", "AWS::Region", "Bucket")]
    # Then each resolves as CloudFormation would
    assert values == ["dev", "us-east-1", "data-bucket"]


def test_get_att_in_both_forms():
    r = resolver()
    assert r.resolve({"Fn::GetAtt": ["Bucket", "Arn"]}, "R") == "arn:aws:s3:::data-bucket"
    assert r.resolve({"Fn::GetAtt": "Bucket.Arn"}, "R") == "arn:aws:s3:::data-bucket"


def test_sub_string_form_resolves_refs_attributes_and_literal_escapes():
    r = resolver()
    text = r.resolve({"Fn::Sub": "${AWS::StackName}-${Stage}/${Bucket.Arn}/${!Literal}"}, "R")
    assert text == "stack-dev/arn:aws:s3:::data-bucket/${Literal}"


def test_sub_list_form_prefers_its_own_variables():
    r = resolver()
    text = r.resolve({"Fn::Sub": ["${Stage}:${Name}", {"Name": {"Ref": "Bucket"}, "Stage": "override"}]}, "R")
    assert text == "override:data-bucket"


def test_join_select_split_and_find_in_map():
    r = resolver()
    assert r.resolve({"Fn::Join": ["-", ["a", {"Ref": "Stage"}, 3]]}, "R") == "a-dev-3"
    assert r.resolve({"Fn::Select": ["1", {"Fn::Split": [":", {"Fn::GetAtt": ["Fn", "Arn"]}]}]}, "R") == "aws"
    assert r.resolve({"Fn::FindInMap": ["Sizes", {"Ref": "Stage"}, "Memory"]}, "R") == 256


def test_base64_and_to_json_string():
    r = resolver()
    assert base64.b64decode(r.resolve({"Fn::Base64": {"Ref": "Stage"}}, "R")) == b"dev"
    assert r.resolve({"Fn::ToJsonString": {"a": {"Ref": "Stage"}}}, "R") == '{"a":"dev"}'


def test_conditions_combine_and_choose_if_branches():
    # Given conditions built from Equals, Not, And, Or and Condition references
    conditions = {
        "IsDev": {"Fn::Equals": [{"Ref": "Stage"}, "dev"]},
        "IsProd": {"Fn::Not": [{"Condition": "IsDev"}]},
        "DevAndThree": {"Fn::And": [{"Condition": "IsDev"}, {"Fn::Equals": [{"Ref": "Count"}, 3]}]},
        "Either": {"Fn::Or": [{"Condition": "IsProd"}, {"Condition": "DevAndThree"}]},
    }
    r = resolver(conditions)
    # When they are evaluated
    # Then numbers compare as strings and references chain
    assert [r.condition(n, "R") for n in conditions] == [True, False, True, True]
    assert r.resolve({"Fn::If": ["IsProd", "big", "small"]}, "R") == "small"


def test_no_value_removes_properties_and_list_items():
    r = resolver({"IsProd": {"Fn::Equals": ["dev", "prod"]}})
    fragment = {
        "Keep": 1,
        "Drop": {"Fn::If": ["IsProd", "x", {"Ref": "AWS::NoValue"}]},
        "List": ["a", {"Ref": "AWS::NoValue"}, "b"],
    }
    assert r.resolve(fragment, "R") == {"Keep": 1, "List": ["a", "b"]}
    assert r.resolve({"Ref": "AWS::NoValue"}, "R") is NO_VALUE


def test_errors_name_the_place_in_the_template():
    r = resolver()
    with pytest.raises(IntrinsicError, match=r"Resources\.Topic\.Properties\.Name\.Ref: .*'Missing'"):
        r.resolve({"Name": {"Ref": "Missing"}}, "Resources.Topic.Properties")
    with pytest.raises(IntrinsicError, match=r"Resources\.Fn\.Properties.*Bucket\.Nope.*no attribute 'Nope'"):
        r.resolve({"Fn::GetAtt": ["Bucket", "Nope"]}, "Resources.Fn.Properties")
    with pytest.raises(IntrinsicError, match=r"Fn::Select index 5 is out of range"):
        r.resolve({"Fn::Select": [5, ["a"]]}, "Resources.X")
    with pytest.raises(IntrinsicError, match="Fn::GetAZs is not supported"):
        r.resolve({"Fn::GetAZs": ""}, "Resources.X")
    with pytest.raises(IntrinsicError, match="unknown condition 'Nope'"):
        r.resolve({"Fn::If": ["Nope", 1, 2]}, "Resources.X")


def test_condition_cycles_are_reported():
    r = resolver({"A": {"Fn::Not": [{"Condition": "B"}]}, "B": {"Fn::Not": [{"Condition": "A"}]}})
    with pytest.raises(IntrinsicError, match="cycle: A -> B -> A"):
        r.condition("A", "Resources.X.Condition")


def test_references_cover_ref_get_att_and_sub_but_not_sub_variables():
    fragment = {
        "A": {"Ref": "Bucket"},
        "B": {"Fn::GetAtt": "Fn.Arn"},
        "C": {"Fn::Sub": ["${Topic}-${Local}-${AWS::Region}", {"Local": {"Ref": "Queue"}}]},
    }
    assert references(fragment) == {"Bucket", "Fn", "Topic", "Queue"}


def test_dependency_order_puts_dependencies_first_and_keeps_template_order_otherwise():
    # Given resources that reference each other (and one explicit DependsOn)
    resources = {
        "Fn": {"Type": "T", "Properties": {"Role": {"Fn::GetAtt": ["Role", "Arn"]}}},
        "Logs": {"Type": "T"},
        "Role": {"Type": "T", "DependsOn": "Logs"},
        "Rule": {"Type": "T", "Properties": {"Target": {"Fn::Sub": "${Fn.Arn}"}, "Stage": {"Ref": "Stage"}}},
    }
    # When they are ordered
    order = dependency_order(resource_dependencies(resources, ["Stage"]))
    # Then each comes after what it needs
    assert order == ["Logs", "Role", "Fn", "Rule"]


def test_dependency_cycles_are_reported_with_their_path():
    resources = {
        "A": {"Type": "T", "Properties": {"X": {"Ref": "B"}}},
        "B": {"Type": "T", "Properties": {"X": {"Fn::GetAtt": ["C", "Arn"]}}},
        "C": {"Type": "T", "DependsOn": ["A"]},
    }
    with pytest.raises(DependencyCycleError) as caught:
        dependency_order(resource_dependencies(resources, []))
    assert caught.value.cycle == ["A", "B", "C", "A"]
    assert "A -> B -> C -> A" in str(caught.value)


def test_reference_to_an_unknown_resource_names_the_referrer():
    with pytest.raises(TemplateError, match=r"Resources\.Fn refers to unknown resource 'Ghost'"):
        resource_dependencies({"Fn": {"Type": "T", "Properties": {"X": {"Ref": "Ghost"}}}}, [])
