# Three buckets: listener uploads (deleted after a while), the media library (music, jingles,
# beds; read by the host-streamer) and the on-air archive (recordings, moved to colder classes
# as they age). All private, uniform access, versioned, in the station's region.

variable "project" {
  type = string
}

variable "region" {
  type = string
}

variable "uploads_retention_days" {
  type = number
}

variable "uploads_iam" {
  description = "role => members on the uploads bucket."
  type        = map(list(string))
}

variable "archive_iam" {
  description = "role => members on the on-air archive bucket."
  type        = map(list(string))
}

variable "media_iam" {
  description = "role => members on the media library bucket."
  type        = map(list(string))
}

locals {
  buckets = {
    uploads = var.uploads_iam
    media   = var.media_iam
    archive = var.archive_iam
  }
  grants = merge([
    for bucket, roles in local.buckets : merge([
      for role, members in roles : {
        for m in members : "${bucket}/${role}/${m}" => { bucket = bucket, role = role, member = m }
      }
    ]...)
  ]...)
}

# Access logs of the three buckets.
resource "google_storage_bucket" "logs" {
  #checkov:skip=CKV_GCP_62:this is the access-log bucket itself; logging it into itself would loop
  project                     = var.project
  name                        = "${var.project}-radio24-access-logs"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age = 90
    }
    action {
      type = "Delete"
    }
  }
}

resource "google_storage_bucket" "uploads" {
  project                     = var.project
  name                        = "${var.project}-radio24-uploads"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  # Objects are create-only (the services write with ifGenerationMatch=0); versioning keeps
  # a deleted one recoverable until the lifecycle below removes it for good.
  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age = var.uploads_retention_days
    }
    action {
      type = "Delete"
    }
  }
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 7
    }
    action {
      type = "Delete"
    }
  }

  logging {
    log_bucket = google_storage_bucket.logs.name
  }
}

resource "google_storage_bucket" "media" {
  project                     = var.project
  name                        = "${var.project}-radio24-media"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      num_newer_versions = 5
    }
    action {
      type = "Delete"
    }
  }

  logging {
    log_bucket = google_storage_bucket.logs.name
  }
}

resource "google_storage_bucket" "archive" {
  project                     = var.project
  name                        = "${var.project}-radio24-archive"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age                   = 30
      matches_storage_class = ["STANDARD"]
    }
    action {
      type          = "SetStorageClass"
      storage_class = "NEARLINE"
    }
  }
  lifecycle_rule {
    condition {
      age                   = 90
      matches_storage_class = ["NEARLINE"]
    }
    action {
      type          = "SetStorageClass"
      storage_class = "COLDLINE"
    }
  }
  lifecycle_rule {
    condition {
      age                   = 365
      matches_storage_class = ["COLDLINE"]
    }
    action {
      type          = "SetStorageClass"
      storage_class = "ARCHIVE"
    }
  }

  logging {
    log_bucket = google_storage_bucket.logs.name
  }
}

locals {
  bucket_names = {
    uploads = google_storage_bucket.uploads.name
    media   = google_storage_bucket.media.name
    archive = google_storage_bucket.archive.name
  }
}

resource "google_storage_bucket_iam_member" "this" {
  for_each = local.grants
  bucket   = local.bucket_names[each.value.bucket]
  role     = each.value.role
  member   = each.value.member
}

output "uploads_bucket" {
  description = "UPLOADS_URL is gs://<this>."
  value       = google_storage_bucket.uploads.name
}

output "media_bucket" {
  description = "LIBRARY_URL is gs://<this>."
  value       = google_storage_bucket.media.name
}

output "archive_bucket" {
  description = "RECORDINGS_URL is gs://<this>."
  value       = google_storage_bucket.archive.name
}
