"""The `sub` claims tests/support/github_oidc.py builds, against the examples of GitHub's OIDC reference."""

from __future__ import annotations

import pytest

from tests.support.github_oidc import Job, Repository, subject

OCTO = Repository("octo-org", "octo-repo", "123456", "456789", immutable=False)
NEW = Repository("octo-org", "octo-repo", "123456", "456789", immutable=True)
CUSTOM = {"use_default": False, "include_claim_keys": ["repo", "context", "ref"]}


@pytest.mark.parametrize("template, repository, job, expected", [
    ({}, OCTO, Job("refs/heads/demo-branch"), "repo:octo-org/octo-repo:ref:refs/heads/demo-branch"),
    ({}, OCTO, Job("refs/heads/main", "Production"), "repo:octo-org/octo-repo:environment:Production"),
    ({}, OCTO, Job("refs/pull/1/merge", pull_request=True), "repo:octo-org/octo-repo:pull_request"),
    ({}, OCTO, Job("refs/heads/main", "Production:V1"), "repo:octo-org/octo-repo:environment:Production%3AV1"),
    ({}, NEW, Job("refs/heads/main"), "repo:octo-org@123456/octo-repo@456789:ref:refs/heads/main"),
    (CUSTOM, NEW, Job("refs/heads/main", "prod"),  # the ids stay in the repo segment of a custom template
     "repo:octo-org@123456/octo-repo@456789:environment:prod:ref:refs/heads/main"),
    ({**CUSTOM, "use_immutable_subject": True}, OCTO, Job("refs/heads/main"),  # an old repository, opted in
     "repo:octo-org@123456/octo-repo@456789:ref:refs/heads/main:ref:refs/heads/main"),
    ({"use_default": False, "include_claim_keys": ["repository_owner_id"]}, OCTO, Job("refs/heads/main"),
     "repository_owner_id:123456"),
], ids=["branch", "environment", "pull-request", "colon-in-the-context", "immutable-default",
        "immutable-custom", "opted-in", "owner-id-only"])
def test_subject_is_the_one_github_documents(template, repository, job, expected):
    assert subject(template, repository, job) == expected


def test_a_claim_key_that_is_not_modelled_is_refused():
    with pytest.raises(ValueError):
        subject({"use_default": False, "include_claim_keys": ["job_workflow_ref"]}, OCTO, Job("refs/heads/main"))
