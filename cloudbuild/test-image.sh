#!/usr/bin/env bash
# Finds or makes the image dev/test runs in: REPO:HASH, HASH over the files the image is made
# from. Pulls it if the registry has it; otherwise builds it and (unless MODE is pull-only,
# as for pull requests, whose identity cannot push) pushes it. Writes the image reference to
# /workspace/.ci-image for the test step.
#
#   cloudbuild/test-image.sh REPO [push|pull-only]
set -euo pipefail
repo=$1
mode=${2:-push}
hash=$(cat cloudbuild/test.Dockerfile dev/install-tools dev/install-ops-tools dev/lib.sh \
    dev/checkov-requirements.txt | sha256sum | cut -c1-16)
image="$repo:$hash"
if docker pull --quiet "$image" >/dev/null 2>&1; then
    echo "test image $image: from the registry"
else
    echo "test image $image: building"
    docker build --quiet -f cloudbuild/test.Dockerfile -t "$image" .
    if [[ $mode == push ]]; then
        docker push --quiet "$image"
    fi
fi
printf '%s\n' "$image" >/workspace/.ci-image
