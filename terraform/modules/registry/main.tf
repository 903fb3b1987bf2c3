# The Docker repository the pipeline pushes one image per service to, tagged with the commit.

variable "project" {
  type = string
}

variable "region" {
  type = string
}

variable "writers" {
  type = list(string)
}

variable "readers" {
  type = list(string)
}

resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:the images hold the station's binaries and no data or secrets; Google-managed encryption at rest suffices
  project       = var.project
  location      = var.region
  repository_id = "radio24"
  format        = "DOCKER"
  description   = "Radio24 service images, tagged with the commit they were built from."

  docker_config {
    # A commit's tag always names the same image: a rollback redeploys exactly what ran.
    immutable_tags = true
  }

  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 30
    }
  }
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "7776000s" # 90 days; the 30 most recent are kept whatever their age
    }
  }
}

resource "google_artifact_registry_repository_iam_member" "writer" {
  for_each   = toset(var.writers)
  project    = var.project
  location   = var.region
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${each.value}"
}

resource "google_artifact_registry_repository_iam_member" "reader" {
  for_each   = toset(var.readers)
  project    = var.project
  location   = var.region
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = "serviceAccount:${each.value}"
}

output "repository_id" {
  value = google_artifact_registry_repository.images.repository_id
}
