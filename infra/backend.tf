# Partial configuration: the bucket, key, region and lock table come from backend.hcl at init time
# (`terraform init -backend-config=backend.hcl`; see backend.hcl.example and infra/bootstrap).
terraform {
  backend "s3" {}
}
