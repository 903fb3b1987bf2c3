output "ingest_url" {
  description = "The public API (HTTPS): POST /v1/submissions, POST /v1/listen-token."
  value       = module.ingest.uri
}

output "moderate_url" {
  description = "The operators' review API (IAM: operator_emails; ID token audience in operator_audience)."
  value       = module.moderate.uri
}

output "operator_audience" {
  description = "Audience for operators' ID tokens: gcloud auth print-identity-token --audiences=<this>."
  value       = local.operator_audience
}

output "image_repository" {
  description = "Where Cloud Build pushes <service>:<commit>."
  value       = local.image_repository
}

output "buckets" {
  description = "UPLOADS_URL, LIBRARY_URL and RECORDINGS_URL buckets."
  value = {
    uploads = module.storage.uploads_bucket
    media   = module.storage.media_bucket
    archive = module.storage.archive_bucket
  }
}

output "migrations_job" {
  value = module.migrations.name
}

output "database_instance" {
  value = module.database.instance_connection_name
}
