# The machine dev/test runs on in Cloud Build: Debian bookworm with Rust, Go 1.26, Java 17 and
# Google's Pub/Sub emulator, with every tool dev/install-tools and dev/install-ops-tools
# install already in the image's cache (RADIO24_CACHE=/opt/radio24). cloudbuild/main.yaml
# tags it with a hash of the files it is made from, so it is rebuilt only when they change.
# The tests make network namespaces, so the container runs --privileged.

FROM golang:1.26-bookworm
# checkov:skip=CKV_DOCKER_2:a CI image run once per build with `docker run`, not a service; nothing polls its health
# checkov:skip=CKV_DOCKER_3:dev/test needs root (apt, network namespaces, pgvector into the system PostgreSQL), as on the developers' machines

ARG RUST_VERSION=1.95.0
ENV RUSTUP_HOME=/opt/rustup CARGO_HOME=/opt/cargo RADIO24_CACHE=/opt/radio24 \
    PATH=/opt/cargo/bin:/usr/local/go/bin:$PATH DEBIAN_FRONTEND=noninteractive

# Google's apt repository for the Pub/Sub emulator (the same jar the developers have).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl gnupg \
    && curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg \
        | gpg --dearmor -o /usr/share/keyrings/cloud.google.gpg \
    && echo "deb [signed-by=/usr/share/keyrings/cloud.google.gpg] https://packages.cloud.google.com/apt cloud-sdk main" \
        > /etc/apt/sources.list.d/google-cloud-sdk.list \
    && apt-get update \
    && apt-get install -y --no-install-recommends google-cloud-cli google-cloud-cli-pubsub-emulator \
        openjdk-17-jre-headless python3 python3-pip python3-venv \
    && rm -rf /var/lib/apt/lists/*

RUN curl -fsSL https://sh.rustup.rs | sh -s -- -y --profile minimal \
        --default-toolchain "${RUST_VERSION}" --component rustfmt,clippy

# The tool installers (and only they) decide what is cached; copying just dev/ keeps this
# layer valid across source changes.
COPY dev/ /tmp/dev/
RUN /tmp/dev/install-tools && /tmp/dev/install-ops-tools && rm -rf /tmp/dev
