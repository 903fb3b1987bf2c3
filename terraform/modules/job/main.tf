# A Cloud Run job (the migrations job): same identity, network and secret wiring as the
# services. Cloud Build points it at each new image before running it, so the image is
# ignored here once the job exists.

variable "project" {
  type = string
}

variable "region" {
  type = string
}

variable "name" {
  type = string
}

variable "image" {
  type = string
}

variable "args" {
  type = list(string)
}

variable "service_account" {
  type = string
}

variable "deployers" {
  description = "Service accounts that deploy new revisions (roles/run.developer on this resource only)."
  type        = list(string)
  default     = []
}

variable "subnetwork_id" {
  type = string
}

variable "env" {
  type = map(string)
}

variable "secret_env" {
  type = map(string)
}

resource "google_cloud_run_v2_job" "this" {
  project             = var.project
  location            = var.region
  name                = var.name
  deletion_protection = false

  template {
    task_count  = 1
    parallelism = 1

    template {
      service_account = var.service_account
      timeout         = "900s"
      max_retries     = 1

      vpc_access {
        egress = "PRIVATE_RANGES_ONLY"
        network_interfaces {
          subnetwork = var.subnetwork_id
        }
      }

      containers {
        image = var.image
        args  = var.args

        resources {
          limits = {
            cpu    = "1"
            memory = "512Mi"
          }
        }

        dynamic "env" {
          for_each = var.env
          content {
            name  = env.key
            value = env.value
          }
        }

        dynamic "env" {
          for_each = var.secret_env
          content {
            name = env.key
            value_source {
              secret_key_ref {
                secret  = env.value
                version = "latest"
              }
            }
          }
        }
      }
    }
  }

  lifecycle {
    ignore_changes = [
      template[0].template[0].containers[0].image,
      client,
      client_version,
    ]
  }
}

resource "google_cloud_run_v2_job_iam_member" "deployer" {
  for_each = toset(var.deployers)
  project  = var.project
  location = var.region
  name     = google_cloud_run_v2_job.this.name
  role     = "roles/run.developer"
  member   = "serviceAccount:${each.value}"
}

output "name" {
  value = google_cloud_run_v2_job.this.name
}
