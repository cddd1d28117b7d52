variable "name" {
  description = "Prefix of the state bucket, the CI roles and the workload role; the same name as the main stack's, whose resources the CI policies name."
  type        = string
  default     = "sdturbo"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "name must be 3-32 characters of lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "region" {
  description = "AWS region of the state bucket, and of the main stack (the CI policies are bound to it)."
  type        = string
  default     = "us-east-1"
}

variable "noncurrent_state_days" {
  description = "Days to keep superseded state versions (the undo history of the stack)."
  type        = number
  default     = 90

  validation {
    condition     = var.noncurrent_state_days >= 1
    error_message = "noncurrent_state_days must be at least 1."
  }
}

# ------------------------------------------------------------------ GitHub OIDC
variable "github_repository" {
  description = "GitHub repository allowed to assume the CI roles, as owner/name."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository))
    error_message = "github_repository must look like owner/name."
  }
}

# GitHub puts these ids in the subject of every OIDC token of the repository (infra/README.md step 2 opts it in
# to immutable subject claims): a name can be deleted and claimed again by someone else, an id never is.
variable "github_repository_ids" {
  description = "Numeric ids of github_repository's owner and of the repository: gh api \"repos/{owner}/{repo}\" --jq .owner.id, and --jq .id."
  type        = object({ owner = string, repository = string })

  validation {
    condition     = alltrue([for id in values(var.github_repository_ids) : can(regex("^[0-9]+$", id))])
    error_message = "github_repository_ids must hold the numeric ids (gh api \"repos/{owner}/{repo}\" --jq .owner.id, and --jq .id), not names."
  }
}

variable "github_branch" {
  description = "Branch whose pushes may push images and run the read-only plan, and the only branch whose jobs in github_environment may apply."
  type        = string
  default     = "main"
}

variable "github_environment" {
  description = "Protected GitHub environment (required reviewers, deployments from github_branch only) whose jobs on github_branch may run terraform apply."
  type        = string
  default     = "production"
}

variable "create_github_oidc_provider" {
  description = "Create the account's GitHub OIDC provider (false if the account already has one)."
  type        = bool
  default     = true
}
