# Cloud SQL for PostgreSQL 15 on a private address only, with daily backups and point-in-time
# recovery. pgvector is enabled by the first migration (CREATE EXTENSION vector), which the
# built-in user may run on Cloud SQL. The services connect with DATABASE_URL, held in Secret
# Manager; its password is generated here as an ephemeral value and written only to Cloud SQL
# and the secret (write-only arguments), never to the state.

variable "project" {
  type = string
}

variable "region" {
  type = string
}

variable "secret_region" {
  type = string
}

variable "network_id" {
  description = "The VPC, as read from its private services connection (so the peering exists first)."
  type        = string
}

variable "tier" {
  type = string
}

variable "availability_type" {
  type = string
}

variable "password_version" {
  type = number
}

variable "deletion_protection" {
  type = bool
}

variable "url_accessors" {
  description = "Service accounts that may read the database-url secret."
  type        = list(string)
}

locals {
  database = "radio24"
  user     = "radio24"
}

resource "google_sql_database_instance" "this" {
  #checkov:skip=CKV_GCP_79:PostgreSQL 15 is the version the station is built and tested on (migrations, pgvector 0.8); a major upgrade is a deliberate change, not a default
  #checkov:skip=CKV2_GCP_13:log_duration logs a line for every statement; ingest alone runs thousands per second at its measured rates, so slow statements are found with Query Insights instead
  project             = var.project
  name                = "radio24"
  region              = var.region
  database_version    = "POSTGRES_15"
  deletion_protection = var.deletion_protection

  settings {
    edition           = "ENTERPRISE"
    tier              = var.tier
    availability_type = var.availability_type
    disk_type         = "PD_SSD"
    disk_autoresize   = true

    ip_configuration {
      ipv4_enabled                                  = false
      private_network                               = var.network_id
      enable_private_path_for_google_cloud_services = false
      # Encrypted connections only (the services' sqlx speaks TLS through rustls).
      #checkov:skip=CKV_GCP_6:connections must be encrypted (ENCRYPTED_ONLY); the check wants client certificates as well, which would mean minting and rotating one per service for a private-IP instance whose password is a secret only the services can read
      ssl_mode = "ENCRYPTED_ONLY"
    }

    backup_configuration {
      enabled                        = true
      start_time                     = "18:00" # 03:00 in Tokyo
      point_in_time_recovery_enabled = true
      transaction_log_retention_days = 7
      backup_retention_settings {
        retained_backups = 14
        retention_unit   = "COUNT"
      }
    }

    maintenance_window {
      day          = 7 # Sunday
      hour         = 19
      update_track = "stable"
    }

    insights_config {
      query_insights_enabled  = true
      record_application_tags = true
      record_client_address   = false
    }

    password_validation_policy {
      enable_password_policy = true
      min_length             = 32
      complexity             = "COMPLEXITY_DEFAULT"
    }

    database_flags {
      name  = "log_hostname"
      value = "on"
    }
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_min_messages"
      value = "error"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }
    database_flags {
      name  = "log_statement"
      value = "ddl"
    }
    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }
  }
}

resource "google_sql_database" "this" {
  project  = var.project
  instance = google_sql_database_instance.this.name
  name     = local.database
}

ephemeral "random_password" "db" {
  length      = 40
  min_upper   = 1
  min_lower   = 1
  min_numeric = 1
  min_special = 1
  # Only characters that stand unescaped in a URL's user info.
  override_special = "-_.~"
}

resource "google_sql_user" "app" {
  project             = var.project
  instance            = google_sql_database_instance.this.name
  name                = local.user
  password_wo         = ephemeral.random_password.db.result
  password_wo_version = var.password_version
}

resource "google_secret_manager_secret" "url" {
  project   = var.project
  secret_id = "database-url"

  replication {
    user_managed {
      replicas {
        location = var.secret_region
      }
    }
  }
}

resource "google_secret_manager_secret_version" "url" {
  secret = google_secret_manager_secret.url.id
  # sslmode=require: encrypted, as the instance insists (Cloud SQL's per-instance CA is not
  # in any root store, so the client does not verify it; the path is private anyway).
  secret_data_wo         = "postgres://${local.user}:${ephemeral.random_password.db.result}@${google_sql_database_instance.this.private_ip_address}:5432/${local.database}?sslmode=require"
  secret_data_wo_version = var.password_version

  depends_on = [google_sql_user.app]
}

resource "google_secret_manager_secret_iam_member" "url" {
  for_each  = toset(var.url_accessors)
  project   = var.project
  secret_id = google_secret_manager_secret.url.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${each.value}"
}

output "url_secret_id" {
  value = google_secret_manager_secret.url.secret_id
}

output "instance_connection_name" {
  value = google_sql_database_instance.this.connection_name
}

output "private_ip" {
  value = google_sql_database_instance.this.private_ip_address
}
