terraform {
  # Write-only attributes and ephemeral resources keep the database password out of the state.
  required_version = ">= 1.11.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 8.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.7"
    }
  }

  # State lives in the bucket made during bootstrap (see README.md):
  #   tofu init -backend-config="bucket=PROJECT-radio24-tfstate"
  backend "gcs" {
    prefix = "radio24"
  }
}

provider "google" {
  project = var.project
  region  = var.region

  default_labels = {
    app        = "radio24"
    managed-by = "terraform"
  }
}
