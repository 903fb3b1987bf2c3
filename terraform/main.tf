# Radio24 on Google Cloud: the root only wires the modules together. Names that the services
# read from their environment (topics, subscriptions, buckets, secrets, variables) are
# checked against the Rust configuration by testkit/tests/deploy_names.rs.

data "google_project" "this" {
  project_id = var.project
}

locals {
  # Topic ids: the defaults of shared::message::Event::default_topic; each push stage's
  # dead-letter topic is `<input topic>-dead-letter` (shared::dead_letter::topic_for).
  topics = {
    ingested = "submission-ingested"
    embedded = "submission-embedded"
    ready    = "submission-ready"
  }
  ready_subscription = "submission-ready-streamer"

  image_repository = "${var.region}-docker.pkg.dev/${var.project}/${module.registry.repository_id}"
  images = {
    for s in ["ingest", "embed", "moderate", "host-streamer"] :
    s => "${local.image_repository}/${s}:${lookup(var.image_tags, s, var.image_tag)}"
  }

  auth_issuer   = coalesce(var.auth.issuer, "https://securetoken.google.com/${var.project}")
  auth_audience = coalesce(var.auth.audience, var.project)

  # The audiences Pub/Sub puts in its push tokens (and Cloud Run accepts as custom audiences):
  # fixed strings, so a service's configuration never needs its own URL.
  push_audience = {
    embed    = "https://radio24-embed-push"
    moderate = "https://radio24-moderate-push"
  }
  operator_audience = "https://radio24-moderate-operators"

  # Variables every service gets.
  common_env = {
    GOOGLE_CLOUD_PROJECT = var.project
    RUST_LOG             = "info"
    LOG_FORMAT           = "json"
    # The migrations job migrates; services start without DDL.
    RUN_MIGRATIONS = "false"
  }
}

module "identities" {
  source  = "./modules/identities"
  project = var.project
}

module "network" {
  source  = "./modules/network"
  project = var.project
  region  = var.region
}

module "registry" {
  source  = "./modules/registry"
  project = var.project
  region  = var.region
  writers = [module.identities.emails["build"]]
  readers = [] # Cloud Run pulls with its service agent, granted by the project's default roles.
}

module "secrets" {
  source  = "./modules/secrets"
  project = var.project
  region  = var.region
  # Which service account may read which secret: nothing else reads any of them.
  accessors = {
    OPENAI_API_KEY     = [module.identities.emails["embed"], module.identities.emails["moderate"], module.identities.emails["host-streamer"]]
    LIVEKIT_API_KEY    = [module.identities.emails["ingest"], module.identities.emails["host-streamer"]]
    LIVEKIT_API_SECRET = [module.identities.emails["ingest"], module.identities.emails["host-streamer"]]
  }
}

module "database" {
  source              = "./modules/database"
  project             = var.project
  secret_region       = var.region
  region              = var.region
  network_id          = module.network.peered_network_id
  tier                = var.database_tier
  availability_type   = var.database_availability
  password_version    = var.database_password_version
  deletion_protection = var.deletion_protection
  url_accessors = [
    module.identities.emails["ingest"],
    module.identities.emails["embed"],
    module.identities.emails["moderate"],
    module.identities.emails["host-streamer"],
    module.identities.emails["migrate"],
  ]
}

module "storage" {
  source                 = "./modules/storage"
  project                = var.project
  region                 = var.region
  uploads_retention_days = var.uploads_retention_days
  # role => members, per bucket. Writers are create-only and read back what they wrote.
  uploads_iam = {
    "roles/storage.objectCreator" = ["serviceAccount:${module.identities.emails["ingest"]}"]
    "roles/storage.objectViewer" = [
      "serviceAccount:${module.identities.emails["ingest"]}",
      "serviceAccount:${module.identities.emails["embed"]}",
      "serviceAccount:${module.identities.emails["host-streamer"]}",
    ]
  }
  archive_iam = {
    "roles/storage.objectCreator" = ["serviceAccount:${module.identities.emails["host-streamer"]}"]
    "roles/storage.objectViewer"  = ["serviceAccount:${module.identities.emails["host-streamer"]}"]
  }
  media_iam = {
    "roles/storage.objectViewer" = ["serviceAccount:${module.identities.emails["host-streamer"]}"]
  }
}

module "pubsub" {
  source                = "./modules/pubsub"
  project               = var.project
  project_number        = data.google_project.this.number
  topics                = local.topics
  ready_subscription    = local.ready_subscription
  max_delivery_attempts = var.max_delivery_attempts
  push_service_account  = module.identities.emails["push"]
  push = {
    embed = {
      topic    = local.topics.ingested
      endpoint = "${module.embed.uri}/push"
      audience = local.push_audience.embed
    }
    moderate = {
      topic    = local.topics.embedded
      endpoint = "${module.moderate.uri}/push"
      audience = local.push_audience.moderate
    }
  }
  # topic key => publishers. The host-streamer runs the outbox relay, which publishes
  # whatever the request-billed services left behind.
  publishers = {
    ingested = [module.identities.emails["ingest"], module.identities.emails["host-streamer"]]
    embedded = [module.identities.emails["embed"], module.identities.emails["host-streamer"]]
    ready    = [module.identities.emails["moderate"], module.identities.emails["host-streamer"]]
  }
  ready_subscribers = [module.identities.emails["host-streamer"]]
}

module "ingest" {
  source              = "./modules/service"
  project             = var.project
  region              = var.region
  name                = "ingest"
  image               = local.images["ingest"]
  service_account     = module.identities.emails["ingest"]
  deployers           = [module.identities.emails["build"]]
  public              = true
  subnetwork_id       = module.network.subnetwork_id
  deletion_protection = var.deletion_protection
  max_instances       = 20
  concurrency         = 80
  env = merge(local.common_env, {
    UPLOADS_URL               = "gs://${module.storage.uploads_bucket}"
    TOPIC_SUBMISSION_INGESTED = local.topics.ingested
    AUTH_MODE                 = "jwt"
    AUTH_JWT_ISSUER           = local.auth_issuer
    AUTH_JWT_AUDIENCE         = local.auth_audience
    AUTH_JWT_JWKS_URL         = var.auth.jwks_url
    # Cloud Run's front end appends the client address to X-Forwarded-For.
    FORWARDED_HOPS = "1"
    # CPU is throttled between requests: publish in the request, let the always-on
    # host-streamer sweep the outbox.
    OUTBOX_RELAY = "false"
    LIVEKIT_URL  = var.livekit_url
    LIVEKIT_ROOM = var.livekit_room
  })
  secret_env = {
    DATABASE_URL       = module.database.url_secret_id
    LIVEKIT_API_KEY    = module.secrets.ids["LIVEKIT_API_KEY"]
    LIVEKIT_API_SECRET = module.secrets.ids["LIVEKIT_API_SECRET"]
  }
  depends_on = [module.database, module.secrets]
}

module "embed" {
  source              = "./modules/service"
  project             = var.project
  region              = var.region
  name                = "embed"
  image               = local.images["embed"]
  startup_path        = "/healthz" # the push stages serve /healthz and /push only
  service_account     = module.identities.emails["embed"]
  deployers           = [module.identities.emails["build"]]
  public              = false
  subnetwork_id       = module.network.subnetwork_id
  deletion_protection = var.deletion_protection
  custom_audiences    = [local.push_audience.embed]
  invokers            = ["serviceAccount:${module.identities.emails["push"]}"]
  max_instances       = 10
  # One transcription at a time per instance makes better use of 2 vCPUs than many.
  concurrency = 4
  memory      = "2Gi"
  env = merge(local.common_env, {
    UPLOADS_URL               = "gs://${module.storage.uploads_bucket}"
    TOPIC_SUBMISSION_EMBEDDED = local.topics.embedded
    PUSH_AUTH                 = "oidc"
    PUSH_AUDIENCE             = local.push_audience.embed
    PUSH_SERVICE_ACCOUNT      = module.identities.emails["push"]
    # The images carry no local models: production speaks to OpenAI, and a missing key
    # stops start-up instead of falling back to models that are not there.
    EMBEDDING_PROVIDER     = "openai"
    TRANSCRIPTION_PROVIDER = "openai"
  })
  secret_env = {
    DATABASE_URL   = module.database.url_secret_id
    OPENAI_API_KEY = module.secrets.ids["OPENAI_API_KEY"]
  }
  depends_on = [module.database, module.secrets]
}

module "moderate" {
  source              = "./modules/service"
  project             = var.project
  region              = var.region
  name                = "moderate"
  image               = local.images["moderate"]
  startup_path        = "/healthz" # the push stages serve /healthz and /push only
  service_account     = module.identities.emails["moderate"]
  deployers           = [module.identities.emails["build"]]
  public              = false
  subnetwork_id       = module.network.subnetwork_id
  deletion_protection = var.deletion_protection
  custom_audiences    = [local.push_audience.moderate, local.operator_audience]
  invokers            = concat(["serviceAccount:${module.identities.emails["push"]}"], [for e in var.operator_emails : "user:${e}"])
  max_instances       = 10
  concurrency         = 40
  env = merge(local.common_env, {
    TOPIC_SUBMISSION_READY = local.topics.ready
    PUSH_AUTH              = "oidc"
    PUSH_AUDIENCE          = local.push_audience.moderate
    PUSH_SERVICE_ACCOUNT   = module.identities.emails["push"]
    MODERATION_PROVIDER    = "openai"
    OPERATOR_AUTH          = "oidc"
    OPERATOR_AUDIENCE      = local.operator_audience
    OPERATOR_EMAILS        = join(",", var.operator_emails)
  })
  secret_env = {
    DATABASE_URL   = module.database.url_secret_id
    OPENAI_API_KEY = module.secrets.ids["OPENAI_API_KEY"]
  }
  depends_on = [module.database, module.secrets]
}

module "host_streamer" {
  source              = "./modules/service"
  project             = var.project
  region              = var.region
  name                = "host-streamer"
  image               = local.images["host-streamer"]
  service_account     = module.identities.emails["host-streamer"]
  deployers           = [module.identities.emails["build"]]
  public              = false
  subnetwork_id       = module.network.subnetwork_id
  deletion_protection = var.deletion_protection
  # Operators call POST /v1/dump with a Google ID token for the operator audience.
  custom_audiences = [local.operator_audience]
  invokers         = [for e in var.operator_emails : "user:${e}"]
  # Exactly one instance, CPU always allocated: it is the station's clock.
  always_on     = true
  min_instances = 1
  max_instances = 1
  concurrency   = 100
  memory        = "1Gi"
  startup_path  = "/readyz"
  # The on-air recording spool lives in memory: a restart of the instance loses the segment
  # being recorded, so segments are cut every 10 minutes rather than every hour.
  spool_mount = "/var/spool/radio24"
  env = merge(local.common_env, {
    UPLOADS_URL            = "gs://${module.storage.uploads_bucket}"
    RECORDINGS_URL         = "gs://${module.storage.archive_bucket}"
    LIBRARY_URL            = "gs://${module.storage.media_bucket}"
    RECORDING_SPOOL_DIR    = "/var/spool/radio24/recordings"
    RECORDING_SEGMENT      = "10m"
    TOPIC_SUBMISSION_READY = local.topics.ready
    READY_SUBSCRIPTION     = local.ready_subscription
    OUTBOX_RELAY           = "true"
    LIVEKIT_URL            = var.livekit_url
    LIVEKIT_ROOM           = var.livekit_room
    # The sweeper re-announces submissions stuck between stages on their topics.
    TOPIC_SUBMISSION_INGESTED = local.topics.ingested
    TOPIC_SUBMISSION_EMBEDDED = local.topics.embedded
    # The DJ's own words are moderated like listeners'; operators may dump the delay.
    MODERATION_PROVIDER = "openai"
    OPERATOR_AUTH       = "oidc"
    OPERATOR_AUDIENCE   = local.operator_audience
    OPERATOR_EMAILS     = join(",", var.operator_emails)
  })
  secret_env = {
    DATABASE_URL       = module.database.url_secret_id
    OPENAI_API_KEY     = module.secrets.ids["OPENAI_API_KEY"]
    LIVEKIT_API_KEY    = module.secrets.ids["LIVEKIT_API_KEY"]
    LIVEKIT_API_SECRET = module.secrets.ids["LIVEKIT_API_SECRET"]
  }
  depends_on = [module.database, module.secrets]
}

module "migrations" {
  source          = "./modules/job"
  project         = var.project
  region          = var.region
  name            = "radio24-migrate"
  image           = local.images["ingest"]
  service_account = module.identities.emails["migrate"]
  deployers       = [module.identities.emails["build"]]
  subnetwork_id   = module.network.subnetwork_id
  # `ingest migrate` applies the embedded sqlx migrations (advisory-locked) and exits; it
  # needs nothing but the database.
  args = ["migrate"]
  env  = local.common_env
  secret_env = {
    DATABASE_URL = module.database.url_secret_id
  }
  depends_on = [module.database]
}

module "monitoring" {
  source                    = "./modules/monitoring"
  project                   = var.project
  alert_emails              = var.alert_emails
  streamer_service          = "host-streamer"
  http_services             = ["ingest", "embed", "moderate"]
  dead_letter_subscriptions = module.pubsub.dead_letter_subscriptions
  dead_air_message          = "dead air on the output"
  depends_on                = [module.host_streamer]
}

module "cicd" {
  source                = "./modules/cicd"
  project               = var.project
  region                = var.region
  github                = var.github
  build_service_account = module.identities.ids["build"]
  build_email           = module.identities.emails["build"]
  # Pull requests run untrusted code: their builds run as an identity that can deploy nothing.
  pr_service_account = module.identities.ids["ci"]
  pr_email           = module.identities.emails["ci"]
  # Cloud Build deploys as these accounts, so it may act as them and nothing else.
  runtime_service_accounts = {
    for k in ["ingest", "embed", "moderate", "host-streamer", "migrate"] : k => module.identities.ids[k]
  }
  substitutions = {
    _REGION      = var.region
    _REPOSITORY  = module.registry.repository_id
    _MIGRATE_JOB = module.migrations.name
  }
}
