# One service account per workload. Project-wide roles are only the telemetry writers; every
# data role is granted on the resource it concerns, in the module that owns the resource.

variable "project" {
  type = string
}

locals {
  accounts = {
    ingest          = "Radio24 ingest (public API)"
    embed           = "Radio24 embed (push handler)"
    moderate        = "Radio24 moderate (push handler, review API)"
    "host-streamer" = "Radio24 host-streamer"
    migrate         = "Radio24 migrations job"
    push            = "Radio24 Pub/Sub push identity (invokes embed and moderate)"
    build           = "Radio24 Cloud Build deployer (main)"
    ci              = "Radio24 Cloud Build tests (pull requests)"
  }
  # Telemetry for the workloads; the push identity only signs tokens.
  telemetry_roles = ["roles/logging.logWriter", "roles/monitoring.metricWriter", "roles/cloudtrace.agent"]
  workloads       = ["ingest", "embed", "moderate", "host-streamer", "migrate"]
}

resource "google_service_account" "this" {
  for_each     = local.accounts
  project      = var.project
  account_id   = "radio24-${each.key}"
  display_name = each.value
}

resource "google_project_iam_member" "telemetry" {
  for_each = {
    for pair in setproduct(local.workloads, local.telemetry_roles) : "${pair[0]}/${pair[1]}" => pair
  }
  project = var.project
  role    = each.value[1]
  member  = "serviceAccount:${google_service_account.this[each.value[0]].email}"
}

output "emails" {
  value = { for k, sa in google_service_account.this : k => sa.email }
}

output "ids" {
  value = { for k, sa in google_service_account.this : k => sa.id }
}
