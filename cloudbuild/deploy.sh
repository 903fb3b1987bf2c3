#!/usr/bin/env bash
# Deploys IMAGE to the Cloud Run service SERVICE and moves traffic to it, rolling back by
# itself when the new revision fails its health checks.
#
#   cloudbuild/deploy.sh SERVICE IMAGE gradual|all-at-once
#
# 1. The new revision is created with no traffic, tagged `candidate`. Cloud Run routes nothing
#    to a revision whose startup probe fails (/readyz, or /healthz for the push stages), so a
#    revision that cannot start ends the deploy here with the old one still serving.
# 2. gradual: traffic moves in TRAFFIC_STEPS (default 10 50 100 percent). After each step
#    and SOAK_SECONDS, the revision must still be Ready, its share of 5xx answers (Cloud
#    Monitoring, run.googleapis.com/request_count of that revision) must stay at or under
#    MAX_ERROR_RATIO, and for a public service its own URL (the candidate tag) must answer
#    HEALTH_PATH. all-at-once (the host-streamer: one instance, nothing to split) moves 100%
#    and then watches the revision for SOAK_SECONDS: Ready, no liveness-probe failures and no
#    dead air in its logs.
# 3. Any failed check puts the traffic back exactly as it was before the deploy and fails the
#    build. On success the service follows its latest revision again, so revisions Terraform
#    creates (configuration changes) serve at once.
set -euo pipefail

service=$1
image=$2
mode=$3
region=${REGION:?REGION must be set}
project=${PROJECT_ID:?PROJECT_ID must be set}
steps=${TRAFFIC_STEPS:-10 50 100}
soak=${SOAK_SECONDS:-120}
max_error_ratio=${MAX_ERROR_RATIO:-0.05}
health_path=${HEALTH_PATH:-}
# Revision names are <service>-<suffix>: the short commit, and the build (a rebuilt commit
# must not collide with the revision its first build made).
suffix=${REVISION_SUFFIX:?REVISION_SUFFIX must be set}${BUILD_ID:+-${BUILD_ID:0:6}}

log() { printf '[deploy %s] %s\n' "$service" "$*" >&2; }

describe() {
    gcloud run services describe "$service" --region "$region" --project "$project" --format=json
}

# "rev1=60,rev2=40": the traffic split now, by revision name.
traffic_spec() {
    describe | python3 -c '
import json, sys
s = json.load(sys.stdin)
split = {}
for t in s.get("status", {}).get("traffic", []):
    if t.get("percent"):
        split[t["revisionName"]] = split.get(t["revisionName"], 0) + t["percent"]
print(",".join(f"{r}={p}" for r, p in split.items()))'
}

# The URL of the revision tagged `candidate`.
candidate_url() {
    describe | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(next((t["url"] for t in s.get("status", {}).get("traffic", []) if t.get("tag") == "candidate"), ""))'
}

revision_ready() {
    [[ $(gcloud run revisions describe "$1" --region "$region" --project "$project" \
        --format='value(status.conditions[0].type,status.conditions[0].status)') == $'Ready\tTrue' ]]
}

# Share of 5xx among the revision's answers over the last $soak seconds (0 without traffic).
error_ratio() {
    local revision=$1 token end start
    token=$(gcloud auth print-access-token)
    end=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    start=$(date -u -d "-$soak seconds" +%Y-%m-%dT%H:%M:%SZ)
    curl -fsS -G -H "Authorization: Bearer $token" \
        "https://monitoring.googleapis.com/v3/projects/$project/timeSeries" \
        --data-urlencode "filter=metric.type=\"run.googleapis.com/request_count\" AND resource.labels.service_name=\"$service\" AND resource.labels.revision_name=\"$revision\"" \
        --data-urlencode "interval.startTime=$start" --data-urlencode "interval.endTime=$end" \
        --data-urlencode "aggregation.alignmentPeriod=${soak}s" \
        --data-urlencode "aggregation.perSeriesAligner=ALIGN_SUM" \
        --data-urlencode "aggregation.crossSeriesReducer=REDUCE_SUM" \
        --data-urlencode "aggregation.groupByFields=metric.labels.response_code_class" |
        python3 -c '
import json, sys
total = errors = 0
for ts in json.load(sys.stdin).get("timeSeries", []):
    n = sum(int(p["value"].get("int64Value", 0)) for p in ts.get("points", []))
    total += n
    if ts["metric"]["labels"].get("response_code_class") == "5xx":
        errors += n
print(f"{errors / total if total else 0:.4f} {errors} {total}")'
}

# Log lines of the revision that mean it is unhealthy (host-streamer: dead air, failed probes).
bad_log_lines() {
    gcloud logging read --project "$project" --freshness="$((soak + 60))s" --limit=5 --format='value(textPayload,jsonPayload.message)' \
        "resource.type=\"cloud_run_revision\" AND resource.labels.revision_name=\"$1\" AND (jsonPayload.message:\"dead air on the output\" OR textPayload:\"probe failed\")"
}

previous=$(traffic_spec)
log "serving before the deploy: ${previous:-nothing}"

rollback() {
    log "ROLLBACK: $*"
    if [[ -n $previous ]]; then
        gcloud run services update-traffic "$service" --region "$region" --project "$project" \
            --to-revisions="$previous" --quiet
        log "traffic restored to $previous"
    fi
    gcloud run services update-traffic "$service" --region "$region" --project "$project" \
        --remove-tags=candidate --quiet || true
    exit 1
}

# 1. New revision, no traffic. gcloud waits for it to be Ready (startup probe) and fails
#    otherwise; the old revision keeps serving.
if ! gcloud run deploy "$service" --image="$image" --region "$region" --project "$project" \
    --no-traffic --tag=candidate --revision-suffix="$suffix" --quiet; then
    log "the new revision did not become ready; traffic unchanged (${previous:-none})"
    exit 1
fi
revision=$(describe | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["latestCreatedRevisionName"])')
log "new revision $revision is ready"

check() {
    revision_ready "$revision" || rollback "$revision is no longer Ready"
    if [[ -n $health_path ]]; then
        local url
        url=$(candidate_url)
        for _ in 1 2 3 4 5; do
            curl -fsS --max-time 10 -o /dev/null "$url$health_path" ||
                rollback "$url$health_path does not answer 2xx"
        done
    fi
    local ratio errors total
    read -r ratio errors total < <(error_ratio "$revision")
    log "$revision: $errors of $total answers were 5xx (ratio $ratio, limit $max_error_ratio)"
    python3 -c "import sys; sys.exit(0 if $ratio <= $max_error_ratio else 1)" ||
        rollback "$revision answers 5xx to $ratio of requests"
    if [[ $mode == all-at-once ]]; then
        local bad
        bad=$(bad_log_lines "$revision")
        [[ -z $bad ]] || rollback "$revision logged: $bad"
    fi
}

# 2. Move traffic.
# A service that served nothing before has nothing to shift from.
[[ -n $previous || $mode != gradual ]] || steps=100

case $mode in
    gradual)
        for pct in $steps; do
            if ((pct >= 100)); then
                spec="$revision=100"
            else
                # The rest stays split as before, scaled down.
                spec=$(python3 -c '
import sys
new, pct, prev = sys.argv[1], int(sys.argv[2]), sys.argv[3]
parts = [p.split("=") for p in prev.split(",") if p]
rest = 100 - pct
out = [f"{new}={pct}"]
given = 0
for i, (r, p) in enumerate(parts):
    share = rest - given if i == len(parts) - 1 else rest * int(p) // 100
    given += share
    out.append(f"{r}={share}")
print(",".join(out))' "$revision" "$pct" "$previous")
            fi
            log "traffic: $spec"
            gcloud run services update-traffic "$service" --region "$region" --project "$project" \
                --to-revisions="$spec" --quiet || rollback "could not set traffic $spec"
            sleep "$soak"
            check
        done
        ;;
    all-at-once)
        log "traffic: $revision=100"
        gcloud run services update-traffic "$service" --region "$region" --project "$project" \
            --to-revisions="$revision=100" --quiet || rollback "could not move traffic"
        sleep "$soak"
        check
        ;;
    *)
        log "unknown mode $mode (gradual or all-at-once)"
        exit 2
        ;;
esac

# 3. Done: follow the latest revision again and drop the tag.
gcloud run services update-traffic "$service" --region "$region" --project "$project" \
    --to-latest --remove-tags=candidate --quiet
log "deployed $revision ($image)"
