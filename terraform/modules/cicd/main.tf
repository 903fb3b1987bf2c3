# Cloud Build triggers: every push to main runs cloudbuild/main.yaml (tests, images,
# migrations, gradual deploy) as the deployer identity; every pull request runs
# cloudbuild/pr.yaml (tests only) as an identity that can deploy nothing.

variable "project" {
  type = string
}

variable "region" {
  type = string
}

variable "github" {
  type = object({
    owner = string
    name  = string
  })
}

variable "build_service_account" {
  description = "Id (projects/.../serviceAccounts/...) of the deployer."
  type        = string
}

variable "build_email" {
  type = string
}

variable "pr_service_account" {
  type = string
}

variable "pr_email" {
  type = string
}

variable "runtime_service_accounts" {
  description = "The accounts the deployed services and jobs run as (the deployer must act as them)."
  type        = map(string)
}

variable "substitutions" {
  type = map(string)
}

resource "google_cloudbuild_trigger" "main" {
  project         = var.project
  location        = "global"
  name            = "radio24-main"
  description     = "main: tests, images, migrations, gradual deploy with rollback"
  filename        = "cloudbuild/main.yaml"
  service_account = var.build_service_account
  substitutions   = var.substitutions

  github {
    owner = var.github.owner
    name  = var.github.name
    push {
      branch = "^main$"
    }
  }
}

resource "google_cloudbuild_trigger" "pull_request" {
  project         = var.project
  location        = "global"
  name            = "radio24-pull-request"
  description     = "pull requests: tests only"
  filename        = "cloudbuild/pr.yaml"
  service_account = var.pr_service_account

  github {
    owner = var.github.owner
    name  = var.github.name
    pull_request {
      branch          = "^main$"
      comment_control = "COMMENTS_ENABLED_FOR_EXTERNAL_CONTRIBUTORS_ONLY"
    }
  }
}

# Both build identities write their logs; the deployer also reads request metrics (the
# rollback check) and lists revisions.
resource "google_project_iam_member" "build" {
  for_each = toset(["roles/logging.logWriter", "roles/monitoring.viewer", "roles/run.viewer"])
  project  = var.project
  role     = each.value
  member   = "serviceAccount:${var.build_email}"
}

resource "google_project_iam_member" "pr_logs" {
  project = var.project
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${var.pr_email}"
}

# The deployer's roles/run.developer is granted on each service and job, in their modules.
resource "google_service_account_iam_member" "act_as" {
  for_each           = var.runtime_service_accounts
  service_account_id = each.value
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${var.build_email}"
}
