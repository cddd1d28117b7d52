# Partial configuration: the bucket, its region and the state key's ARN come from backend.hcl at init time
# (`terraform init -backend-config=backend.hcl`; see backend.hcl.example and infra/bootstrap), or from the
# repository variables in CI (deploy-infrastructure.yml). What every init shares is here:
# - use_lockfile: the lock is an object beside the state, "<key>.tflock" (Terraform >= 1.10); no lock table.
# - encrypt with kms_key_id: state and lock object are SSE-KMS with the state key. Without kms_key_id the
#   backend sends SSE-S3 (AES256), which overrides the bucket's KMS default.
terraform {
  backend "s3" {
    key          = "sdturbo-serve/terraform.tfstate"
    encrypt      = true
    use_lockfile = true
  }
}
