# A private network for Direct VPC egress from Cloud Run and private services access for
# Cloud SQL: the database has no public address.

variable "project" {
  type = string
}

variable "region" {
  type = string
}

variable "subnet_cidr" {
  type    = string
  default = "10.8.0.0/24"
}

resource "google_compute_network" "this" {
  project                 = var.project
  name                    = "radio24"
  auto_create_subnetworks = false
}

resource "google_compute_subnetwork" "run" {
  project                  = var.project
  name                     = "radio24-run-${var.region}"
  region                   = var.region
  network                  = google_compute_network.this.id
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true

  log_config {
    aggregation_interval = "INTERVAL_10_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Nothing may reach into the network: Cloud Run only sends (Direct VPC egress) and Cloud SQL
# sits behind the peering. An explicit, logged deny instead of the implied one.
resource "google_compute_firewall" "deny_ingress" {
  project   = var.project
  name      = "radio24-deny-all-ingress"
  network   = google_compute_network.this.id
  direction = "INGRESS"
  priority  = 65534

  deny {
    protocol = "all"
  }
  source_ranges = ["0.0.0.0/0"]

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

# Private services access: the range Google carves Cloud SQL's private addresses from.
resource "google_compute_global_address" "private_services" {
  project       = var.project
  name          = "radio24-private-services"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  prefix_length = 20
  network       = google_compute_network.this.id
}

resource "google_service_networking_connection" "private_services" {
  network                 = google_compute_network.this.id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.private_services.name]
}

output "network_id" {
  value = google_compute_network.this.id
}

output "subnetwork_id" {
  value = google_compute_subnetwork.run.id
}

output "peered_network_id" {
  description = "The VPC id, read from the private services connection so users wait for the peering."
  value       = google_service_networking_connection.private_services.network
}
