# Secret Manager secrets for the third-party keys. Terraform creates the empty secrets and who
# may read them; operators add the values (`gcloud secrets versions add`), so no key ever
# passes through the Terraform state. Each secret is readable only by the services that
# mount it.

variable "project" {
  type = string
}

variable "region" {
  type = string
}

variable "accessors" {
  description = "Environment variable name => service accounts that may read it. The secret id is the name in lower case with dashes (OPENAI_API_KEY -> openai-api-key)."
  type        = map(list(string))
}

locals {
  grants = merge([
    for name, emails in var.accessors : {
      for email in emails : "${name}/${email}" => { name = name, email = email }
    }
  ]...)
}

resource "google_secret_manager_secret" "this" {
  for_each  = var.accessors
  project   = var.project
  secret_id = lower(replace(each.key, "_", "-"))

  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }
}

resource "google_secret_manager_secret_iam_member" "accessor" {
  for_each  = local.grants
  project   = var.project
  secret_id = google_secret_manager_secret.this[each.value.name].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${each.value.email}"
}

output "ids" {
  description = "Environment variable name => secret id."
  value       = { for k, s in google_secret_manager_secret.this : k => s.secret_id }
}
