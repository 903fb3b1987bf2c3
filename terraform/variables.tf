variable "project" {
  description = "Google Cloud project id the station is deployed to."
  type        = string
}

variable "region" {
  description = "Region of every regional resource (Cloud Run, Cloud SQL, buckets, Artifact Registry)."
  type        = string
  default     = "asia-northeast1"
}

variable "livekit_url" {
  description = "wss:// URL of the LiveKit server or LiveKit Cloud project (LIVEKIT_URL)."
  type        = string

  validation {
    condition     = can(regex("^wss?://", var.livekit_url))
    error_message = "livekit_url must start with wss:// (or ws://)."
  }
}

variable "livekit_room" {
  description = "The station's LiveKit room (LIVEKIT_ROOM)."
  type        = string
  default     = "radio24"
}

variable "image_tag" {
  description = "Image tag (the commit) Terraform creates the services and the migrations job with. Later deploys are Cloud Build's: Terraform ignores the image afterwards."
  type        = string
}

variable "image_tags" {
  description = "Per-service image tags overriding image_tag (keys: ingest, embed, moderate, host-streamer)."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.image_tags) : contains(["ingest", "embed", "moderate", "host-streamer"], k)])
    error_message = "image_tags keys must be ingest, embed, moderate or host-streamer."
  }
}

variable "auth" {
  description = "Listener authentication for ingest: Firebase Auth / Identity Platform JWTs of this project unless overridden."
  type = object({
    issuer   = optional(string)
    audience = optional(string)
    jwks_url = optional(string, "https://www.googleapis.com/service_accounts/v1/jwk/securetoken@system.gserviceaccount.com")
  })
  default = {}
}

variable "operator_emails" {
  description = "Google accounts allowed to use moderate's review API (OPERATOR_EMAILS)."
  type        = list(string)
  default     = []
}

variable "alert_emails" {
  description = "Email addresses notified by the alert policies."
  type        = list(string)
  default     = []
}

variable "database_tier" {
  description = "Cloud SQL machine tier."
  type        = string
  default     = "db-custom-2-7680"
}

variable "database_availability" {
  description = "ZONAL or REGIONAL (a standby in a second zone)."
  type        = string
  default     = "REGIONAL"

  validation {
    condition     = contains(["ZONAL", "REGIONAL"], var.database_availability)
    error_message = "database_availability must be ZONAL or REGIONAL."
  }
}

variable "database_password_version" {
  description = "Bump to generate a new database password (written to Cloud SQL and the database-url secret, never to the state)."
  type        = number
  default     = 1
}

variable "uploads_retention_days" {
  description = "Listener uploads are deleted this many days after upload."
  type        = number
  default     = 30
}

variable "max_delivery_attempts" {
  description = "Push deliveries before a message goes to its dead-letter topic (5-100)."
  type        = number
  default     = 5
}

variable "github" {
  description = "The repository Cloud Build triggers watch (the Cloud Build GitHub app must be installed on it)."
  type = object({
    owner = string
    name  = string
  })
}

variable "deletion_protection" {
  description = "Protect the database and the Cloud Run services against terraform destroy."
  type        = bool
  default     = true
}
