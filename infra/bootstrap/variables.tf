variable "name" {
  description = "Prefix of the state bucket and lock table."
  type        = string
  default     = "sdturbo"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "name must be 3-32 characters of lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "region" {
  description = "AWS region of the state bucket and lock table (use the stack's region)."
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
