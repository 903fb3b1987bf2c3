# Alert policies: dead air on the final mix, dead letters piling up, a pipeline stage
# answering 5xx, and the host-streamer not running.

variable "project" {
  type = string
}

variable "alert_emails" {
  type = list(string)
}

variable "streamer_service" {
  type = string
}

variable "http_services" {
  type = list(string)
}

variable "dead_letter_subscriptions" {
  type = list(string)
}

variable "dead_air_message" {
  description = "The host-streamer's log message when the silence watchdog puts the emergency source on air."
  type        = string
}

variable "error_ratio" {
  description = "Share of 5xx answers over 5 minutes that pages."
  type        = number
  default     = 0.05
}

resource "google_monitoring_notification_channel" "email" {
  for_each     = toset(var.alert_emails)
  project      = var.project
  display_name = "Radio24 on-call ${each.value}"
  type         = "email"
  labels = {
    email_address = each.value
  }
}

locals {
  channels = [for c in google_monitoring_notification_channel.email : c.id]
}

# Counts the watchdog's "dead air" log lines (JSON logs on Cloud Run: jsonPayload.message).
resource "google_logging_metric" "dead_air" {
  project = var.project
  name    = "radio24-dead-air"
  filter  = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${var.streamer_service}\" AND jsonPayload.message:\"${var.dead_air_message}\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

resource "google_monitoring_alert_policy" "dead_air" {
  project               = var.project
  display_name          = "Radio24: dead air on the output"
  combiner              = "OR"
  notification_channels = local.channels

  conditions {
    display_name = "silence watchdog fired"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.dead_air.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_SUM"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "The host-streamer's final mix was silent for SILENCE_MAX and the emergency source went on air. Check the program director and the voices in the host-streamer's logs."
  }
}

resource "google_monitoring_alert_policy" "dead_letters" {
  project               = var.project
  display_name          = "Radio24: dead letters waiting"
  combiner              = "OR"
  notification_channels = local.channels

  conditions {
    display_name = "messages in a dead-letter subscription"
    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=one_of(${join(",", [for s in var.dead_letter_subscriptions : "\"${s}\""])})"
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "300s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "A pipeline stage gave up on messages after max_delivery_attempts. Fix the cause (logs of the stage named by the subscription), then run `embed replay-dead-letters` or `moderate replay-dead-letters`."
  }
}

resource "google_monitoring_alert_policy" "error_rate" {
  project               = var.project
  display_name          = "Radio24: 5xx error rate"
  combiner              = "OR"
  notification_channels = local.channels

  conditions {
    display_name = "share of 5xx answers above ${var.error_ratio}"
    condition_threshold {
      filter             = "metric.type=\"run.googleapis.com/request_count\" AND resource.type=\"cloud_run_revision\" AND metric.labels.response_code_class=\"5xx\" AND resource.labels.service_name=one_of(${join(",", [for s in var.http_services : "\"${s}\""])})"
      denominator_filter = "metric.type=\"run.googleapis.com/request_count\" AND resource.type=\"cloud_run_revision\" AND resource.labels.service_name=one_of(${join(",", [for s in var.http_services : "\"${s}\""])})"
      comparison         = "COMPARISON_GT"
      threshold_value    = var.error_ratio
      duration           = "300s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.labels.service_name"]
      }
      denominator_aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.labels.service_name"]
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "More than ${var.error_ratio * 100}% of a service's answers are 5xx. 503s from embed or moderate mean a dependency (database, OpenAI) is down and Pub/Sub is retrying."
  }
}

resource "google_monitoring_alert_policy" "streamer_down" {
  project               = var.project
  display_name          = "Radio24: host-streamer down"
  combiner              = "OR"
  notification_channels = local.channels

  conditions {
    display_name = "no running host-streamer instance"
    condition_absent {
      filter   = "metric.type=\"run.googleapis.com/container/instance_count\" AND resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${var.streamer_service}\" AND metric.labels.state=\"active\""
      duration = "180s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "The always-on host-streamer reports no active instance: the station is off the air. Check its revisions and logs (startup probe /readyz needs the database)."
  }
}
