# The pipeline's topics and subscriptions.
#
#   submission-ingested --push--> embed     (dead letters: submission-ingested-dead-letter)
#   submission-embedded --push--> moderate  (dead letters: submission-embedded-dead-letter)
#   submission-ready    --pull--> host-streamer (submission-ready-streamer)
#
# One dead-letter topic per push stage, each with a pull subscription of the same name that
# `embed replay-dead-letters` / `moderate replay-dead-letters` drain back into the stage's
# input topic (shared::dead_letter). A shared dead-letter topic could not tell which stage
# failed, and a replay could send a message to the wrong stage.

variable "project" {
  type = string
}

variable "project_number" {
  type = string
}

variable "topics" {
  description = "key => topic id (ingested, embedded, ready)."
  type        = map(string)
}

variable "ready_subscription" {
  type = string
}

variable "max_delivery_attempts" {
  type = number

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "Pub/Sub accepts 5 to 100 delivery attempts."
  }
}

variable "push_service_account" {
  description = "Email of the identity Pub/Sub signs push tokens as."
  type        = string
}

variable "push" {
  description = "Push stage name => its input topic id, endpoint and token audience."
  type = map(object({
    topic    = string
    endpoint = string
    audience = string
  }))
}

variable "publishers" {
  description = "Topic key => service accounts that publish to it."
  type        = map(list(string))
}

variable "ready_subscribers" {
  type = list(string)
}

variable "ack_deadline_seconds" {
  description = "Push ack deadline: above the Cloud Run request timeout (60 s), which is above HANDLER_DEADLINE (50 s), so a delivery is never redelivered while its first attempt still runs."
  type        = number
  default     = 90
}

locals {
  # The identity Pub/Sub itself acts as: it forwards dead letters, acknowledges the source
  # message and signs push tokens.
  service_agent = "serviceAccount:service-${var.project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  dead_letter   = { for stage, p in var.push : stage => "${p.topic}-dead-letter" }
  publisher_grants = merge([
    for key, emails in var.publishers : {
      for e in emails : "${key}/${e}" => { topic = key, email = e }
    }
  ]...)
}

resource "google_pubsub_topic" "this" {
  #checkov:skip=CKV_GCP_83:messages are claim checks (ids, no listener content); Google-managed encryption at rest suffices, and a CMEK key's loss would make the backlog unreadable
  for_each = var.topics
  project  = var.project
  name     = each.value
  # Messages are claim checks (ids); a day of retention lets a subscription be seeked back.
  message_retention_duration = "86400s"
}

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:dead letters are the same claim checks (ids only); Google-managed encryption at rest suffices
  for_each = local.dead_letter
  project  = var.project
  name     = each.value
}

# The replay commands' pull subscriptions on the dead-letter topics (same name as the topic).
resource "google_pubsub_subscription" "dead_letter" {
  for_each                   = local.dead_letter
  project                    = var.project
  name                       = each.value
  topic                      = google_pubsub_topic.dead_letter[each.key].id
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"

  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_subscription" "push" {
  for_each                   = var.push
  project                    = var.project
  name                       = "${each.value.topic}-${each.key}"
  topic                      = google_pubsub_topic.this[[for k, t in var.topics : k if t == each.value.topic][0]].id
  ack_deadline_seconds       = var.ack_deadline_seconds
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = each.value.endpoint
    oidc_token {
      service_account_email = var.push_service_account
      audience              = each.value.audience
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.key].id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }
}

# The host-streamer's streaming pull. No dead-letter policy: the streamer nacks only while
# its database is away, and an approved submission must wait for it, not be set aside.
resource "google_pubsub_subscription" "ready" {
  project                    = var.project
  name                       = var.ready_subscription
  topic                      = google_pubsub_topic.this["ready"].id
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"

  retry_policy {
    minimum_backoff = "5s"
    maximum_backoff = "300s"
  }

  expiration_policy {
    ttl = ""
  }
}

# --- IAM ---------------------------------------------------------------------------------

resource "google_pubsub_topic_iam_member" "publisher" {
  for_each = local.publisher_grants
  project  = var.project
  topic    = google_pubsub_topic.this[each.value.topic].name
  role     = "roles/pubsub.publisher"
  member   = "serviceAccount:${each.value.email}"
}

resource "google_pubsub_subscription_iam_member" "ready_subscriber" {
  for_each     = toset(var.ready_subscribers)
  project      = var.project
  subscription = google_pubsub_subscription.ready.name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${each.value}"
}

# Dead-lettering needs the service agent to publish to the dead-letter topic and to
# acknowledge (subscribe to) the source subscription.
resource "google_pubsub_topic_iam_member" "agent_dead_letter_publisher" {
  for_each = local.dead_letter
  project  = var.project
  topic    = google_pubsub_topic.dead_letter[each.key].name
  role     = "roles/pubsub.publisher"
  member   = local.service_agent
}

resource "google_pubsub_subscription_iam_member" "agent_source_subscriber" {
  for_each     = var.push
  project      = var.project
  subscription = google_pubsub_subscription.push[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.service_agent
}

# The service agent mints the OIDC tokens of push deliveries as the push identity.
resource "google_service_account_iam_member" "agent_token_creator" {
  service_account_id = "projects/${var.project}/serviceAccounts/${var.push_service_account}"
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.service_agent
}

output "dead_letter_subscriptions" {
  value = [for s in google_pubsub_subscription.dead_letter : s.name]
}

output "push_subscriptions" {
  value = { for k, s in google_pubsub_subscription.push : k => s.name }
}
