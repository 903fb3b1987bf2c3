# One Cloud Run service: its own service account, Direct VPC egress to the private database,
# secrets mounted as environment variables, startup and liveness probes. Terraform creates the
# service and owns its configuration; Cloud Build deploys new images and moves traffic
# (cloudbuild/deploy.sh), so the image, the traffic split and the client fields it writes are
# ignored here once the service exists.

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

variable "service_account" {
  type = string
}

variable "deployers" {
  description = "Service accounts that deploy new revisions (roles/run.developer on this resource only)."
  type        = list(string)
  default     = []
}

variable "public" {
  description = "Reachable from the internet without a Google identity (ingest). Otherwise internal ingress and IAM-checked invocation."
  type        = bool
}

variable "subnetwork_id" {
  type = string
}

variable "deletion_protection" {
  type = bool
}

variable "custom_audiences" {
  description = "Audiences Cloud Run accepts in invokers' ID tokens besides its URL."
  type        = list(string)
  default     = []
}

variable "invokers" {
  description = "Members granted roles/run.invoker (for services that are not public)."
  type        = list(string)
  default     = []
}

variable "always_on" {
  description = "CPU always allocated (not only during requests)."
  type        = bool
  default     = false
}

variable "min_instances" {
  type    = number
  default = 0
}

variable "max_instances" {
  type = number
}

variable "concurrency" {
  type = number
}

variable "cpu" {
  type    = string
  default = "1"
}

variable "memory" {
  type    = string
  default = "512Mi"
}

variable "timeout" {
  description = "Request timeout; above HANDLER_DEADLINE (50 s), below the push ack deadline (90 s)."
  type        = string
  default     = "60s"
}

variable "startup_path" {
  description = "Startup probe path: a revision gets no traffic until it answers 2xx here."
  type        = string
  default     = "/readyz"
}

variable "liveness_path" {
  type    = string
  default = "/healthz"
}

variable "spool_mount" {
  description = "Mount an in-memory volume here (\"\" for none)."
  type        = string
  default     = ""
}

variable "env" {
  type = map(string)
}

variable "secret_env" {
  description = "Environment variable => Secret Manager secret id (latest version)."
  type        = map(string)
}

resource "google_cloud_run_v2_service" "this" {
  project             = var.project
  location            = var.region
  name                = var.name
  ingress             = var.public ? "INGRESS_TRAFFIC_ALL" : "INGRESS_TRAFFIC_INTERNAL_ONLY"
  deletion_protection = var.deletion_protection
  custom_audiences    = var.custom_audiences
  # The public API authenticates listeners itself (JWTs); every other service checks IAM.
  invoker_iam_disabled = var.public

  template {
    service_account                  = var.service_account
    timeout                          = var.timeout
    max_instance_request_concurrency = var.concurrency
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"

    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
    }

    vpc_access {
      # Only private ranges (the database) go through the VPC; Google APIs, OpenAI and
      # LiveKit are reached directly.
      egress = "PRIVATE_RANGES_ONLY"
      network_interfaces {
        subnetwork = var.subnetwork_id
      }
    }

    dynamic "volumes" {
      for_each = var.spool_mount == "" ? [] : [var.spool_mount]
      content {
        name = "spool"
        empty_dir {
          medium     = "MEMORY"
          size_limit = "256Mi"
        }
      }
    }

    containers {
      name  = var.name
      image = var.image

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        cpu_idle          = !var.always_on
        startup_cpu_boost = true
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

      dynamic "volume_mounts" {
        for_each = var.spool_mount == "" ? [] : [var.spool_mount]
        content {
          name       = "spool"
          mount_path = volume_mounts.value
        }
      }

      startup_probe {
        initial_delay_seconds = 0
        period_seconds        = 3
        timeout_seconds       = 2
        failure_threshold     = 40
        http_get {
          path = var.startup_path
          port = 8080
        }
      }

      liveness_probe {
        period_seconds    = 10
        timeout_seconds   = 3
        failure_threshold = 3
        http_get {
          path = var.liveness_path
          port = 8080
        }
      }
    }
  }

  traffic {
    type    = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
    percent = 100
  }

  lifecycle {
    ignore_changes = [
      template[0].containers[0].image,
      template[0].revision,
      traffic,
      client,
      client_version,
    ]
  }
}

resource "google_cloud_run_v2_service_iam_member" "invoker" {
  for_each = toset(var.invokers)
  project  = var.project
  location = var.region
  name     = google_cloud_run_v2_service.this.name
  role     = "roles/run.invoker"
  member   = each.value
}

output "uri" {
  value = google_cloud_run_v2_service.this.uri
}

resource "google_cloud_run_v2_service_iam_member" "deployer" {
  for_each = toset(var.deployers)
  project  = var.project
  location = var.region
  name     = google_cloud_run_v2_service.this.name
  role     = "roles/run.developer"
  member   = "serviceAccount:${each.value}"
}

output "name" {
  value = google_cloud_run_v2_service.this.name
}
