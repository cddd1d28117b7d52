resource "aws_ecr_repository" "this" {
  name                 = var.name
  image_tag_mutability = "IMMUTABLE" # a tag (the commit SHA) always names the same image

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.this.arn
  }
}

# Rules apply from the lowest rulePriority up, and "an image that matches the tagging requirements of a higher
# priority rule cannot be expired by a rule with a lower priority" (Amazon ECR User Guide, lifecycle policy
# evaluation rules). The first rule selects the image the stack deploys (image_tag) and keeps it, so the
# newest-N rule after it can never expire the live image, however many undeployed images are pushed: an
# endpoint scaling from zero pulls it again. Until an image is deployed (the first, targeted apply) there is
# no such rule.
resource "aws_ecr_lifecycle_policy" "this" {
  repository = aws_ecr_repository.this.name
  policy = jsonencode({
    rules = concat(
      var.image_tag == null ? [] : [{
        rulePriority = 1
        description  = "Keep the image the endpoint runs (image_tag)"
        selection    = { tagStatus = "tagged", tagPatternList = [var.image_tag], countType = "imageCountMoreThan", countNumber = 1 }
        action       = { type = "expire" }
      }],
      [
        {
          rulePriority = 2
          description  = "Drop untagged layers (interrupted pushes) after a week"
          selection    = { tagStatus = "untagged", countType = "sinceImagePushed", countUnit = "days", countNumber = 7 }
          action       = { type = "expire" }
        },
        {
          rulePriority = 3
          description  = "Keep the newest ${var.ecr_keep_images} images"
          selection    = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = var.ecr_keep_images }
          action       = { type = "expire" }
        },
      ],
    )
  })
}
