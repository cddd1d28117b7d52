"""tests/support/ecr_lifecycle.py against the evaluation rules of the Amazon ECR User Guide."""

from __future__ import annotations

from tests.support.ecr_lifecycle import Image, expired

KEEP_TWO = {"rulePriority": 2, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 2},
            "action": {"type": "expire"}}


def images(count: int) -> list[Image]:
    return [Image((f"v{n}",), pushed_days_ago=count - n) for n in range(count)]  # v{count-1} is the newest


def test_a_count_rule_expires_the_oldest_beyond_its_number():
    pushed = images(4)
    assert expired({"rules": [KEEP_TWO]}, pushed) == set(pushed[:2])


def test_an_image_a_higher_priority_rule_selects_is_never_expired_by_a_lower_one():
    pushed = images(4)
    keep = {"rulePriority": 1, "selection": {"tagStatus": "tagged", "tagPatternList": ["v0"],
                                             "countType": "imageCountMoreThan", "countNumber": 1},
            "action": {"type": "expire"}}
    assert expired({"rules": [keep, KEEP_TWO]}, pushed) == {pushed[1]}


def test_untagged_images_expire_by_age_and_patterns_take_wildcards():
    old, recent = Image((), 9), Image((), 1)
    untagged = {"rulePriority": 1, "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                                                 "countUnit": "days", "countNumber": 7}, "action": {"type": "expire"}}
    release = Image(("release-1", "abc"), 30)
    by_pattern = {"rulePriority": 2, "selection": {"tagStatus": "tagged", "tagPatternList": ["release-*"],
                                                   "countType": "sinceImagePushed", "countUnit": "days",
                                                   "countNumber": 20}, "action": {"type": "expire"}}
    assert expired({"rules": [untagged, by_pattern]}, [old, recent, release]) == {old, release}
