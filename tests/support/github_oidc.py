"""The `sub` claim of a GitHub Actions OIDC token, built the way GitHub documents it, so that the CI roles' trust
policies can be evaluated against the subjects real jobs get.

GitHub's OpenID Connect reference (docs.github.com/en/actions/reference/security/oidc):

- default subject: ``repo:OWNER/REPO:<context>``, where the context is ``environment:NAME`` for a job that
  references an environment, else ``pull_request`` for a pull request event, else ``ref:<ref>``;
- a customized template "results in a new format for the entire `sub` claim": its claim keys in order, each
  ``key:value``, except ``repo`` (``repo:OWNER/REPO``) and ``context`` (as above); "any `:` within the
  context value will be replaced with `%3A`";
- immutable subject claims: repositories created, renamed or transferred after GitHub's cutoff, and older ones
  that opt in (``use_immutable_subject`` in the repository's template), get ``repo:OWNER@OWNER_ID/REPO@REPO_ID``,
  and the ids are "always included in the `repo` segment ... even when you customize claims".
"""

from __future__ import annotations

from dataclasses import dataclass

ISSUER = "token.actions.githubusercontent.com"


@dataclass(frozen=True)
class Repository:
    owner: str
    name: str
    owner_id: str
    id: str
    immutable: bool  # created, renamed or transferred after GitHub's cutoff: immutable subjects whatever the template


@dataclass(frozen=True)
class Job:
    ref: str  # e.g. refs/heads/main
    environment: str | None = None
    pull_request: bool = False

    @property
    def context(self) -> str:
        """What follows the repository in the default subject; a `:` inside its value becomes `%3A`."""
        if self.environment:
            return f"environment:{self.environment.replace(':', '%3A')}"
        return "pull_request" if self.pull_request else f"ref:{self.ref.replace(':', '%3A')}"


def subject(template: dict, repository: Repository, job: Job) -> str:
    """The `sub` claim GitHub puts in the job's token, for the repository's subject template (the JSON of
    `PUT /repos/{owner}/{repo}/actions/oidc/customization/sub`)."""
    immutable = repository.immutable or bool(template.get("use_immutable_subject"))
    repo = (f"{repository.owner}@{repository.owner_id}/{repository.name}@{repository.id}" if immutable
            else f"{repository.owner}/{repository.name}")
    keys = ["repo", "context"] if template.get("use_default", True) else template["include_claim_keys"]
    claims = {"repo": f"repo:{repo}", "context": job.context,
              "ref": f"ref:{job.ref}", "environment": f"environment:{job.environment}",
              "repository_id": f"repository_id:{repository.id}",
              "repository_owner_id": f"repository_owner_id:{repository.owner_id}"}
    unknown = [key for key in keys if key not in claims]
    if unknown:
        raise ValueError(f"claim keys not modelled: {unknown}")
    return ":".join(claims[key] for key in keys)


def token_context(subject_claim: str, audience: str = "sts.amazonaws.com") -> tuple[tuple[str, str], ...]:
    """The condition keys AWS sets from a GitHub token in AssumeRoleWithWebIdentity."""
    return ((f"{ISSUER}:aud", audience), (f"{ISSUER}:sub", subject_claim))
