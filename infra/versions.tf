terraform {
  required_version = ">= 1.10.0" # the S3 backend's use_lockfile (backend.tf)

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.82.0, < 6.0.0"
    }
  }
}
