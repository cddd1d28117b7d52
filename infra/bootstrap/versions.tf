terraform {
  required_version = ">= 1.10.0" # as infra/ (its backend locks with use_lockfile)

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.82.0, < 6.0.0"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = { Project = var.name, ManagedBy = "terraform", Stack = "bootstrap" }
  }
}
