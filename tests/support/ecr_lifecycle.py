"""Which images an ECR lifecycle policy expires, by the evaluation rules the Amazon ECR User Guide gives
("How lifecycle policies work"), for the rules the stack writes (count and age, tag patterns and prefixes):

- rules are applied from the lowest ``rulePriority`` up;
- an image that matches the tagging requirements of a higher priority rule cannot be expired by a rule with
  a lower priority; lower rules still count it as if it had not been expired;
- ``tagPatternList`` selects an image when every pattern (``*`` is a wildcard) matches one of its tags,
  ``tagPrefixList`` when every prefix starts one of them; ``untagged`` selects images without tags, ``any``
  every image;
- ``imageCountMoreThan`` expires what is beyond the newest ``countNumber`` of its selection (by push time);
  ``sinceImagePushed`` what was pushed more than ``countNumber`` days ago.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass


@dataclass(frozen=True)
class Image:
    tags: tuple[str, ...]
    pushed_days_ago: float


def _selects(selection: dict, image: Image) -> bool:
    status = selection["tagStatus"]
    if status == "any":
        return True
    if status == "untagged":
        return not image.tags
    patterns = selection.get("tagPatternList")
    if patterns is not None:
        return all(any(fnmatch.fnmatchcase(tag, pattern) for tag in image.tags) for pattern in patterns)
    return all(any(tag.startswith(prefix) for tag in image.tags) for prefix in selection["tagPrefixList"])


def expired(policy: dict, images: list[Image]) -> set[Image]:
    """The images the policy expires."""
    gone: set[Image] = set()
    claimed: set[Image] = set()  # matched by the tags of a rule with a higher priority
    newest_first = sorted(images, key=lambda image: image.pushed_days_ago)
    for rule in sorted(policy["rules"], key=lambda rule: rule["rulePriority"]):
        selection = rule["selection"]
        matched = [image for image in newest_first if _selects(selection, image)]
        if selection["countType"] == "imageCountMoreThan":
            candidates = matched[selection["countNumber"]:]
        else:  # sinceImagePushed, in days
            candidates = [image for image in matched if image.pushed_days_ago > selection["countNumber"]]
        gone |= {image for image in candidates if image not in claimed}
        claimed |= set(matched)
    return gone
