# Image repositories: `agent` holds cca-agent (coding sessions and previews alike), `uat-proxy`
# holds cca-uat-proxy. `deploy.sh staging` pushes `:staging` and `:<git sha>`; `deploy.sh promote`
# moves `:latest` to the staging image without a rebuild.

resource "aws_ecr_repository" "this" {
  #checkov:skip=CKV_AWS_51:The channel tags `latest` and `staging` are moved by design (promote re-tags the tested staging image as latest, rollback moves it back); every image also keeps its immutable git-sha tag.
  for_each             = toset(["agent", "uat-proxy"])
  name                 = "${local.prefix}-${each.key}"
  image_tag_mutability = "MUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
  }
}

resource "aws_ecr_lifecycle_policy" "this" {
  for_each   = aws_ecr_repository.this
  repository = each.value.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Remove images no tag names any more"
      selection = {
        tagStatus   = "untagged"
        countType   = "sinceImagePushed"
        countUnit   = "days"
        countNumber = var.ecr_untagged_image_days
      }
      action = { type = "expire" }
    }]
  })
}
