"""Checks the Cloud Build pipelines (cloudbuild/*.yaml) for the steps the deployment needs.

Run by dev/check-deploy with the Checkov venv's Python (PyYAML is pinned there):

    python3 dev/check-cloudbuild.py [REPO_ROOT]

main.yaml must run the test suite, build one image per service from cloudbuild/Dockerfile
(a non-root final stage per service), push each tagged with the commit only after the tests
passed, run the migrations job Terraform creates before any deploy, and deploy every service
through cloudbuild/deploy.sh (gradual traffic shift, automatic rollback). pr.yaml must run the
tests and nothing that pushes or deploys. Prints one line per check and a closing
"cloudbuild: N passed, M failed"; exits 1 on any failure.
"""

import pathlib
import re
import sys

import yaml

SERVICES = ["ingest", "embed", "moderate", "host-streamer"]
# How each service is rolled out: the host-streamer is one instance and cannot split traffic.
ROLLOUT = {"ingest": "gradual", "embed": "gradual", "moderate": "gradual", "host-streamer": "all-at-once"}
BUILTINS = {"PROJECT_ID", "PROJECT_NUMBER", "BUILD_ID", "LOCATION", "COMMIT_SHA", "SHORT_SHA",
            "REVISION_ID", "BRANCH_NAME", "TAG_NAME", "REPO_NAME", "REPO_FULL_NAME", "TRIGGER_NAME",
            "TRIGGER_BUILD_CONFIG_PATH", "SERVICE_ACCOUNT_EMAIL", "SERVICE_ACCOUNT", "_HEAD_BRANCH",
            "_BASE_BRANCH", "_HEAD_REPO_URL", "_PR_NUMBER"}

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
results = []


def check(ok, what):
    results.append((bool(ok), what))
    print(("ok    " if ok else "FAIL  ") + what)


def text_of(step):
    """Everything a step runs, as one string (entrypoint, args, script)."""
    parts = [str(step.get("entrypoint", ""))]
    parts += [str(a) for a in step.get("args", []) or []]
    parts.append(str(step.get("script", "")))
    return " ".join(parts)


def load(name):
    path = root / "cloudbuild" / name
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        check(False, f"{name} parses as YAML ({e})")
        return None
    check(isinstance(doc, dict) and isinstance(doc.get("steps"), list) and doc["steps"],
          f"{name} parses and has steps")
    return doc if isinstance(doc, dict) else None


def dependencies(steps):
    """Step id => ids it transitively waits for (Cloud Build: no waitFor = all before it;
    waitFor ['-'] = none)."""
    ids = [s.get("id", f"#{i}") for i, s in enumerate(steps)]
    direct = {}
    for i, s in enumerate(steps):
        wait = s.get("waitFor")
        if wait is None:
            direct[ids[i]] = set(ids[:i])
        else:
            direct[ids[i]] = {w for w in wait if w != "-"}
    closure = {}

    def visit(i):
        if i not in closure:
            closure[i] = set()
            for d in direct.get(i, ()):
                closure[i] |= {d} | visit(d)
        return closure[i]

    for i in ids:
        visit(i)
    return closure


def substitutions_declared(name, doc):
    raw = (root / "cloudbuild" / name).read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)\}", raw))
    declared = set((doc.get("substitutions") or {}).keys())
    undeclared = sorted(u for u in used if u.startswith("_") and u not in declared and u not in BUILTINS)
    unknown = sorted(u for u in used if not u.startswith("_") and u not in BUILTINS)
    check(not undeclared, f"{name}: every user substitution has a default ({', '.join(undeclared) or 'all declared'})")
    check(not unknown, f"{name}: built-in substitutions exist ({', '.join(unknown) or 'all known'})")


def dockerfile_stages():
    """Final stage name => its USER, from cloudbuild/Dockerfile."""
    stages, current = {}, None
    for line in (root / "cloudbuild" / "Dockerfile").read_text().splitlines():
        m = re.match(r"\s*FROM\s+\S+\s+AS\s+(\S+)", line, re.I)
        if m:
            current = m.group(1)
            stages[current] = None
        m = re.match(r"\s*USER\s+(\S+)", line, re.I)
        if m and current:
            stages[current] = m.group(1)
    return stages


def terraform_migrations_job():
    main = (root / "terraform" / "main.tf").read_text()
    block = main.split('module "migrations" {', 1)[1].split("\n}", 1)[0]
    m = re.search(r'^\s*name\s*=\s*"([^"]+)"', block, re.M)
    return m.group(1) if m else None


def check_main():
    doc = load("main.yaml")
    if not doc:
        return
    steps = doc["steps"]
    deps = dependencies(steps)
    by_id = {s.get("id"): s for s in steps}
    substitutions_declared("main.yaml", doc)

    tests = [s["id"] for s in steps if re.search(r"(\.ci/run|dev/test)\b", text_of(s))]
    check(tests, "main.yaml runs the test suite (.ci/run or dev/test)")
    test_id = tests[0] if tests else None

    stages = dockerfile_stages()
    builds = {}
    for svc in SERVICES:
        found = [s["id"] for s in steps
                 if "build" in (s.get("args") or [])
                 and "cloudbuild/Dockerfile" in text_of(s)
                 and re.search(rf"--target {re.escape(svc)}\b", " ".join(map(str, s.get("args") or [])))
                 and f"/{svc}:${{COMMIT_SHA}}" in text_of(s)]
        check(found, f"main.yaml builds {svc} from cloudbuild/Dockerfile --target {svc}, tagged :$COMMIT_SHA")
        builds[svc] = found[0] if found else None
        user = stages.get(svc)
        check(user is not None and user.split(":")[0] not in ("root", "0"),
              f"Dockerfile stage {svc} exists and runs as a non-root user ({user})")

    pushes = [s["id"] for s in steps if "docker push" in text_of(s) or (s.get("args") or [None])[0] == "push"]
    check(pushes, "main.yaml pushes images")
    push = pushes[0] if pushes else None
    if push:
        body = text_of(by_id[push])
        for svc in SERVICES:
            check(svc in body and ":${COMMIT_SHA}" in body, f"the push step pushes {svc}:$COMMIT_SHA")
        check(test_id in deps[push], "images are pushed only after the tests passed")
        check(all(b in deps[push] for b in builds.values() if b), "the push step waits for every image build")
    check("images" not in doc, "no `images:` list (it would push after the deploy, too late)")

    job = terraform_migrations_job()
    check(job, f"terraform/main.tf names the migrations job ({job})")
    migrates = [s["id"] for s in steps if "gcloud run jobs execute" in text_of(s)]
    check(migrates, "main.yaml runs the migrations job (gcloud run jobs execute)")
    migrate = migrates[0] if migrates else None
    if migrate:
        body = text_of(by_id[migrate])
        check("--wait" in body, "the migrations job is awaited (--wait), so a failed migration stops the deploy")
        check("ingest:${COMMIT_SHA}" in body, "the migrations job runs the new ingest image")
        declared = (doc.get("substitutions") or {}).get("_MIGRATE_JOB")
        check(declared == job, f"_MIGRATE_JOB defaults to the job Terraform creates ({declared} vs {job})")
        check(push in deps[migrate], "migrations run after the images are pushed")

    deploy_sh = (root / "cloudbuild" / "deploy.sh").read_text()
    for svc in SERVICES:
        found = [s["id"] for s in steps
                 if re.search(rf"cloudbuild/deploy\.sh {re.escape(svc)} \S*/{re.escape(svc)}:\$\{{COMMIT_SHA\}}\S* {ROLLOUT[svc]}\b",
                              text_of(s))]
        check(found, f"main.yaml deploys {svc}:$COMMIT_SHA through cloudbuild/deploy.sh ({ROLLOUT[svc]})")
        if found and migrate:
            check(migrate in deps[found[0]] and test_id in deps[found[0]],
                  f"{svc} is deployed only after the tests and the migrations")

    # What deploy.sh does: a new revision without traffic, stepped traffic, health checks
    # after each step, and putting the old split back when one fails.
    check("--no-traffic" in deploy_sh and "--tag=candidate" in deploy_sh,
          "deploy.sh creates the new revision with no traffic (tagged candidate)")
    check(re.search(r"TRAFFIC_STEPS:-10 50 100", deploy_sh), "deploy.sh shifts traffic gradually (10, 50, 100 %)")
    check(re.search(r'rollback\(\)\s*\{[^}]*--to-revisions="\$previous"', deploy_sh, re.S),
          "deploy.sh's rollback restores the traffic split it found")
    for what, pattern in [("a revision that is no longer Ready", r"revision_ready .*\|\| rollback"),
                          ("failing health probes", r'curl [^\n]*\$health_path"\s*\|\|\s*\n\s*rollback'),
                          ("a 5xx ratio over the limit", r"max_error_ratio.*\n\s*rollback"),
                          ("dead air or failed probes in the logs", r"bad_log_lines.*\n.*rollback")]:
        check(re.search(pattern, deploy_sh), f"deploy.sh rolls back on {what}")


def check_pr():
    doc = load("pr.yaml")
    if not doc:
        return
    substitutions_declared("pr.yaml", doc)
    steps = doc["steps"]
    check(any(re.search(r"(\.ci/run|dev/test)\b", text_of(s)) for s in steps), "pr.yaml runs the test suite")
    forbidden = [s.get("id") for s in steps
                 if re.search(r"docker push|deploy\.sh|gcloud run|jobs execute|update-traffic", text_of(s))
                 or (s.get("args") or [None])[0] == "push"]
    check(not forbidden, f"pr.yaml runs tests only: nothing pushes or deploys ({forbidden or 'none'})")
    check("images" not in doc, "pr.yaml lists no images to push")
    image_step = " ".join(text_of(s) for s in steps if "test-image.sh" in text_of(s))
    check("pull-only" in image_step, "pr.yaml never pushes its test image (pull-only)")


def check_triggers():
    cicd = (root / "terraform" / "modules" / "cicd" / "main.tf").read_text()
    main = re.search(r'resource "google_cloudbuild_trigger" "main" \{(.*?)\n\}', cicd, re.S)
    pr = re.search(r'resource "google_cloudbuild_trigger" "pull_request" \{(.*?)\n\}', cicd, re.S)
    check(main and '"cloudbuild/main.yaml"' in main.group(1) and re.search(r'push \{\s*branch\s*=\s*"\^main\$"', main.group(1)),
          "the main trigger runs cloudbuild/main.yaml on pushes to main")
    check(pr and '"cloudbuild/pr.yaml"' in pr.group(1) and "pull_request {" in pr.group(1),
          "the pull-request trigger runs cloudbuild/pr.yaml")
    check(pr and "pr_service_account" in pr.group(1), "pull requests build as their own identity (not the deployer)")


check_main()
check_pr()
check_triggers()
passed = sum(1 for ok, _ in results if ok)
failed = len(results) - passed
print(f"cloudbuild: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
