//! The deployment (terraform/) and the services' configuration (the Rust sources and the
//! configuration table in README.md) must name the same things: every topic, subscription,
//! bucket, secret and environment variable named on one side must exist on the other. Each
//! test prints what is missing on which side.
//!
//! No servers and no OpenTofu are needed: the Terraform files are read as text. They are kept
//! in `tofu fmt` form (dev/check-deploy checks it), which is what the small block reader below
//! relies on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lives in the workspace")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The services Terraform deploys, by their module name in terraform/main.tf, with the name
/// the README's "used by" column gives them. The migrations job runs `ingest migrate`.
const DEPLOYED: &[(&str, &str)] = &[
    ("ingest", "ingest"),
    ("embed", "embed"),
    ("moderate", "moderate"),
    ("host_streamer", "host-streamer"),
    ("migrations", "ingest migrate"),
];

// ---------------------------------------------------------------------------------------------
// A reader for the HCL this repository writes: blocks and `key = value` assignments, with
// values spanning balanced braces, brackets and parentheses.
// ---------------------------------------------------------------------------------------------

/// The body of the first block whose header line starts with `header` (e.g. `module "ingest"`).
fn block<'a>(text: &'a str, header: &str) -> Option<&'a str> {
    let start = text
        .lines()
        .scan(0usize, |offset, line| {
            let at = *offset;
            *offset += line.len() + 1;
            Some((at, line))
        })
        .find(|(_, line)| line.trim_start().starts_with(header) && line.trim_end().ends_with('{'))
        .map(|(at, line)| at + line.len())?;
    let body = &text[start..];
    let end = matching_close(body)?;
    Some(&body[..end])
}

/// Index of the `}` that closes an already opened block (strings and comments skipped).
fn matching_close(body: &str) -> Option<usize> {
    let mut depth = 1i32;
    let mut in_string = false;
    let mut in_comment = false;
    let mut prev = '\0';
    for (i, c) in body.char_indices() {
        if in_comment {
            in_comment = c != '\n';
            prev = c;
            continue;
        }
        match c {
            '"' if prev != '\\' => in_string = !in_string,
            '#' if !in_string => in_comment = true,
            '/' if !in_string && prev == '/' => in_comment = true,
            '{' | '[' | '(' if !in_string => depth += 1,
            '}' | ']' | ')' if !in_string => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        prev = c;
    }
    None
}

/// Top-level `key = value` pairs of a block body (comments dropped; nested blocks skipped).
fn assignments(body: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut lines = body.lines().peekable();
    let mut depth = 0i32;
    while let Some(line) = lines.next() {
        let code = strip_comment(line);
        let trimmed = code.trim();
        if depth == 0
            && let Some((key, value)) = trimmed.split_once('=')
            && !key.trim().is_empty()
            && key
                .trim()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '"' || c == '-')
            && !value.starts_with('=')
        {
            let key = key.trim().trim_matches('"').to_owned();
            let mut value = value.trim().to_owned();
            let mut open = balance(&value);
            while open > 0 {
                let Some(next) = lines.next() else { break };
                let next = strip_comment(next);
                value.push('\n');
                value.push_str(next.trim());
                open += balance(next.trim());
            }
            out.insert(key, value);
            continue;
        }
        depth += balance(trimmed);
    }
    out
}

fn strip_comment(line: &str) -> &str {
    let mut in_string = false;
    let mut prev = '\0';
    for (i, c) in line.char_indices() {
        match c {
            '"' if prev != '\\' => in_string = !in_string,
            '#' if !in_string => return &line[..i],
            '/' if !in_string && prev == '/' => return &line[..i - 1],
            _ => {}
        }
        prev = c;
    }
    line
}

fn balance(s: &str) -> i32 {
    let mut n = 0;
    let mut in_string = false;
    let mut prev = '\0';
    for c in s.chars() {
        match c {
            '"' if prev != '\\' => in_string = !in_string,
            '{' | '[' | '(' if !in_string => n += 1,
            '}' | ']' | ')' if !in_string => n -= 1,
            _ => {}
        }
        prev = c;
    }
    n
}

/// The object literal inside a value: `{ ... }` or `merge(local.x, { ... })`.
fn object_body(value: &str) -> Option<&str> {
    let open = value.find('{')?;
    let body = &value[open + 1..];
    Some(&body[..matching_close(body)?])
}

/// Every `emails["NAME"]` in a value: the service accounts it names.
fn named_accounts(value: &str) -> BTreeSet<String> {
    value
        .split("emails[\"")
        .skip(1)
        .filter_map(|rest| rest.split_once('"').map(|(name, _)| name.to_owned()))
        .collect()
}

fn unquote(value: &str) -> Option<String> {
    let v = value.trim();
    (v.starts_with('"') && v.ends_with('"') && v.len() >= 2).then(|| v[1..v.len() - 1].to_owned())
}

struct Terraform {
    main: String,
    /// `local.topics` keys => topic ids.
    topics: BTreeMap<String, String>,
    locals: BTreeMap<String, String>,
}

struct Deployed {
    /// README name of the workload ("ingest", ..., "ingest migrate").
    readme_name: &'static str,
    /// Account name in module.identities.
    account: String,
    env: BTreeMap<String, String>,
    secret_env: BTreeMap<String, String>,
}

impl Terraform {
    fn load() -> Terraform {
        let main = read("terraform/main.tf");
        let locals_body = block(&main, "locals").expect("terraform/main.tf has a locals block");
        let locals = assignments(locals_body);
        let topics =
            assignments(object_body(&locals["topics"]).expect("local.topics is an object"))
                .into_iter()
                .map(|(k, v)| (k, unquote(&v).expect("topic ids are literals")))
                .collect();
        Terraform {
            main,
            topics,
            locals,
        }
    }

    fn module(&self, name: &str) -> BTreeMap<String, String> {
        let body = block(&self.main, &format!("module \"{name}\""))
            .unwrap_or_else(|| panic!("terraform/main.tf has no module \"{name}\""));
        assignments(body)
    }

    /// Resolves what a service's variable is set to: literals, `local.topics.X`,
    /// `local.NAME` literals; anything else is returned as written.
    fn resolve(&self, value: &str) -> String {
        let v = value.trim();
        if let Some(s) = unquote(v) {
            return s;
        }
        if let Some(key) = v.strip_prefix("local.topics.") {
            return self
                .topics
                .get(key)
                .cloned()
                .unwrap_or_else(|| v.to_owned());
        }
        if let Some(key) = v.strip_prefix("local.")
            && let Some(s) = self.locals.get(key).and_then(|l| unquote(l))
        {
            return s;
        }
        v.to_owned()
    }

    fn deployed(&self) -> Vec<Deployed> {
        let common = assignments(
            object_body(&self.locals["common_env"]).expect("local.common_env is an object"),
        );
        DEPLOYED
            .iter()
            .map(|(module, readme_name)| {
                let m = self.module(module);
                let mut env: BTreeMap<String, String> = common.clone();
                let own = match m.get("env").map(|v| v.trim()) {
                    // Only the common variables (the migrations job).
                    Some("local.common_env") => BTreeMap::new(),
                    Some(v) => object_body(v)
                        .map(assignments)
                        .unwrap_or_else(|| panic!("module {module}: env is not an object")),
                    None => panic!("module {module} sets no env"),
                };
                env.extend(own);
                let secret_env = m
                    .get("secret_env")
                    .and_then(|v| object_body(v).map(assignments))
                    .unwrap_or_default();
                let account = named_accounts(&m["service_account"])
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| {
                        panic!("module {module}: service_account is not an identity")
                    });
                Deployed {
                    readme_name,
                    account,
                    env,
                    secret_env,
                }
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The Rust side.
// ---------------------------------------------------------------------------------------------

/// Non-test Rust sources of the deployed crates (each file cut at its first `#[cfg(test)]`).
fn rust_sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let code = text
                    .split("#[cfg(test)]")
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                out.push((path, code));
            }
        }
    }
    let mut out = Vec::new();
    for dir in [
        "shared/src",
        "media/src",
        "models/src",
        "functions/ingest/src",
        "functions/embed/src",
        "functions/moderate/src",
        "host-streamer/src",
    ] {
        walk(&root().join(dir), &mut out);
    }
    assert!(out.len() > 20, "found only {} Rust files", out.len());
    out
}

fn is_env_name(s: &str) -> bool {
    s.len() >= 3
        && s.contains('_')
        && s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// The string literals that follow `marker` in `code`.
fn literals_after<'a>(code: &'a str, marker: &str) -> Vec<&'a str> {
    code.match_indices(marker)
        .filter_map(|(i, _)| {
            let rest = &code[i + marker.len()..];
            let rest = rest.trim_start();
            let rest = rest.strip_prefix('"')?;
            rest.split_once('"').map(|(lit, _)| lit)
        })
        .collect()
}

/// Every environment variable the services read: literal names passed to the readers of
/// `shared::config::Env` and `std::env`, the `Event::topic_env_var` names, and names built
/// from a prefix (`GoogleIdConfig::from_env(env, "PUSH")` reads `PUSH_AUDIENCE`, ...).
fn rust_env_names() -> BTreeSet<String> {
    const READERS: &[&str] = &[
        "required(",
        "required::<String>(",
        "required::<u16>(",
        ".or(",
        "optional(",
        "optional_with(",
        "duration_or(",
        "flag_or(",
        ".raw(",
        "process_var(",
        "env::var(",
        "var_os(",
        "model_dir(",
        "ConfigError::Missing(",
        "Event::Ingested =>",
        "Event::Embedded =>",
        "Event::Ready =>",
        "const ENV: &str =",
    ];
    let mut names = BTreeSet::new();
    // Type => the suffixes its `from_env(env, prefix)` appends to the prefix.
    let mut prefix_types: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let sources = rust_sources();
    for (_, code) in &sources {
        let code = code.as_str();
        for reader in READERS {
            for lit in literals_after(code, reader) {
                if is_env_name(lit) {
                    names.insert(lit.to_owned());
                }
            }
        }
        // tracing-subscriber's EnvFilter reads RUST_LOG.
        if code.contains("from_default_env") {
            names.insert("RUST_LOG".to_owned());
        }
        // Types whose `from_env(env, prefix)` reads `{prefix}_{suffix}` variables.
        if code.contains("format!(\"{prefix}_{") {
            let suffixes: BTreeSet<String> = literals_after(code, "var(")
                .into_iter()
                .map(str::to_owned)
                .collect();
            for ty in code.split("impl ").skip(1) {
                let ty: String = ty
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .collect();
                if !ty.is_empty() {
                    prefix_types.entry(ty).or_default().extend(suffixes.clone());
                }
            }
        }
        // `for name in ["A", "B"]` loops over variable names.
        for list in code.split("for name in [").skip(1) {
            let list = list.split(']').next().unwrap_or_default();
            for lit in list.split('"').skip(1).step_by(2) {
                if is_env_name(lit) {
                    names.insert(lit.to_owned());
                }
            }
        }
    }
    // `Type::from_env(env, "X", ..)`: a prefix for the types above, a whole name otherwise
    // (`Provider::from_env(env, "EMBEDDING_PROVIDER", ..)`).
    for (_, code) in &sources {
        for (i, _) in code.match_indices("::from_env(env,") {
            let ty: String = code[..i]
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let Some(lit) = literals_after(&code[i..], "::from_env(env,")
                .into_iter()
                .next()
            else {
                continue;
            };
            if let Some(suffixes) = prefix_types.get(&ty) {
                for s in suffixes {
                    names.insert(format!("{lit}_{s}"));
                }
            } else if is_env_name(lit) {
                names.insert(lit.to_owned());
            }
        }
    }
    names
}

/// `Event::default_topic`: event variant => topic id.
fn rust_default_topics() -> BTreeMap<String, String> {
    let code = read("shared/src/message.rs");
    let body = code
        .split("pub fn default_topic")
        .nth(1)
        .expect("shared::message::Event::default_topic exists");
    let body = &body[..body.find("\n    }\n").expect("end of default_topic")];
    body.lines()
        .filter_map(|l| {
            let (variant, topic) = l.trim().split_once("=>")?;
            Some((
                variant.trim().trim_start_matches("Event::").to_owned(),
                unquote(topic.trim().trim_end_matches(','))?,
            ))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// README's configuration table.
// ---------------------------------------------------------------------------------------------

struct Row {
    used_by: String,
    default: String,
    meaning: String,
}

fn readme_table() -> BTreeMap<String, Row> {
    let readme = read("README.md");
    let table = readme
        .split("| variable | used by | default | meaning |")
        .nth(1)
        .expect("README.md has the configuration table");
    let mut rows = BTreeMap::new();
    for line in table.lines().skip(2) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        assert!(cells.len() >= 4, "malformed README row: {line}");
        for name in cells[0].split('`').skip(1).step_by(2) {
            rows.insert(
                name.to_owned(),
                Row {
                    used_by: cells[1].to_owned(),
                    default: cells[2].to_owned(),
                    meaning: cells[3..].join(" | "),
                },
            );
        }
    }
    assert!(rows.len() > 50, "read only {} README rows", rows.len());
    rows
}

/// Whether a README row's "used by" names the workload.
fn used_by(row: &Row, workload: &str) -> bool {
    let used = row.used_by.replace('`', "");
    if workload == "ingest migrate" {
        // The migrations job reads the database settings only (the rows for all services).
        return used.contains("all services");
    }
    used.contains("all services")
        || used
            .split(',')
            .map(str::trim)
            .any(|u| u == workload || u.starts_with(&format!("{workload} ")))
}

/// Variables whose value is a credential: they must come from Secret Manager.
fn is_secret(name: &str) -> bool {
    name == "DATABASE_URL"
        || name.ends_with("_API_KEY")
        || name.ends_with("_SECRET")
        || name.ends_with("_PASSWORD")
}

/// The object-store variables (the README's `gs://bucket` values).
fn is_bucket_var(name: &str, row: &Row) -> bool {
    name.ends_with("_URL") && (row.meaning.contains("gs://") || row.meaning.starts_with("store "))
}

/// The readable diff the tests print.
fn report(problems: &[String]) {
    assert!(
        problems.is_empty(),
        "terraform/ and the services' configuration disagree:\n  - {}\n",
        problems.join("\n  - ")
    );
}

// ---------------------------------------------------------------------------------------------
// The checks.
// ---------------------------------------------------------------------------------------------

#[test]
fn every_variable_the_services_read_is_in_the_readme_table() {
    let table = readme_table();
    let read_by_rust = rust_env_names();
    let problems: Vec<String> = read_by_rust
        .iter()
        .filter(|n| !table.contains_key(*n))
        .filter(|n| !["K_SERVICE", "HOME"].contains(&n.as_str())) // set by the platform
        .map(|n| {
            format!("the services read {n} but README.md's configuration table does not list it")
        })
        .collect();
    report(&problems);
}

#[test]
fn every_variable_terraform_sets_is_read_by_the_service_it_is_set_on() {
    let tf = Terraform::load();
    let table = readme_table();
    let read_by_rust = rust_env_names();
    let mut problems = Vec::new();
    for d in tf.deployed() {
        for name in d.env.keys().chain(d.secret_env.keys()) {
            match table.get(name) {
                None => problems.push(format!(
                    "terraform sets {name} on {} but README.md's configuration table has no such variable",
                    d.readme_name
                )),
                Some(row) if !used_by(row, d.readme_name) => problems.push(format!(
                    "terraform sets {name} on {}, which README.md says is used by {} only",
                    d.readme_name, row.used_by
                )),
                Some(_) => {}
            }
            if !read_by_rust.contains(name) {
                problems.push(format!(
                    "terraform sets {name} on {} but no service reads it (not found in the Rust configuration)",
                    d.readme_name
                ));
            }
        }
    }
    report(&problems);
}

#[test]
fn every_required_variable_is_set_for_every_service_that_needs_it() {
    let tf = Terraform::load();
    let table = readme_table();
    let mut problems = Vec::new();
    for d in tf.deployed() {
        let set: BTreeMap<&str, String> = d
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), tf.resolve(v)))
            .chain(
                d.secret_env
                    .keys()
                    .map(|k| (k.as_str(), "<secret>".to_owned())),
            )
            .collect();
        for (name, row) in &table {
            if !used_by(row, d.readme_name) || !row.default.starts_with("required") {
                continue;
            }
            // The migrations job needs the database only.
            if d.readme_name == "ingest migrate" && !row.used_by.contains("all services") {
                continue;
            }
            // "required with `jwt`": only when some variable of this service is `jwt` (or
            // when the named variable is set).
            let condition: Vec<&str> = row
                .default
                .strip_prefix("required with")
                .map(|c| c.split('`').skip(1).step_by(2).collect())
                .unwrap_or_default();
            let applies = condition.is_empty()
                || condition
                    .iter()
                    .any(|c| set.contains_key(c) || set.values().any(|v| v == c));
            if applies && !set.contains_key(name.as_str()) {
                problems.push(format!(
                    "{} needs {name} ({}) but terraform does not set it",
                    d.readme_name, row.default
                ));
            }
        }
    }
    report(&problems);
}

#[test]
fn topics_and_subscriptions_match_the_services_defaults() {
    let tf = Terraform::load();
    let rust = rust_default_topics();
    let mut problems = Vec::new();
    let tf_topics: BTreeSet<&String> = tf.topics.values().collect();
    let rust_topics: BTreeSet<&String> = rust.values().collect();
    for t in rust_topics.difference(&tf_topics) {
        problems.push(format!(
            "the services use topic {t}; terraform's local.topics has no such topic"
        ));
    }
    for t in tf_topics.difference(&rust_topics) {
        problems.push(format!(
            "terraform creates topic {t}; no Event::default_topic names it"
        ));
    }

    // A topic variable must point where the services' default does.
    let env_var_topic: BTreeMap<&str, &str> = [
        ("TOPIC_SUBMISSION_INGESTED", "Ingested"),
        ("TOPIC_SUBMISSION_EMBEDDED", "Embedded"),
        ("TOPIC_SUBMISSION_READY", "Ready"),
    ]
    .into();
    let message = read("shared/src/message.rs");
    for (var, variant) in &env_var_topic {
        assert!(
            message.contains(&format!("Event::{variant} => \"{var}\"")),
            "shared/src/message.rs no longer maps Event::{variant} to {var}"
        );
    }
    for d in tf.deployed() {
        for (var, value) in &d.env {
            if let Some(variant) = env_var_topic.get(var.as_str()) {
                let want = &rust[*variant];
                let got = tf.resolve(value);
                if &got != want {
                    problems.push(format!(
                        "{}: {var} is {got}, the services' topic is {want}",
                        d.readme_name
                    ));
                }
            }
        }
    }

    // Push stages: embed consumes Ingested, moderate Embedded (their main.rs), and Terraform's
    // push subscriptions must feed each stage from that topic.
    let pubsub = tf.module("pubsub");
    let push = assignments(object_body(&pubsub["push"]).expect("module pubsub: push is an object"));
    for (stage, variant) in [("embed", "Ingested"), ("moderate", "Embedded")] {
        let main_rs = read(&format!("functions/{stage}/src/main.rs"));
        assert!(
            main_rs.contains(&format!("stage_main(\"{stage}\", Event::{variant}")),
            "functions/{stage}/src/main.rs no longer consumes Event::{variant}"
        );
        match push
            .get(stage)
            .and_then(|v| object_body(v).map(assignments))
        {
            None => problems.push(format!(
                "{stage} consumes {} but terraform has no push subscription for it",
                rust[variant]
            )),
            Some(p) => {
                let topic = tf.resolve(&p["topic"]);
                if topic != rust[variant] {
                    problems.push(format!(
                        "{stage}'s push subscription reads {topic}; {stage} consumes {}",
                        rust[variant]
                    ));
                }
                if !p["endpoint"].contains("/push\"") {
                    problems.push(format!(
                        "{stage}'s push endpoint {} is not its /push route",
                        p["endpoint"]
                    ));
                }
            }
        }
    }

    // Dead-letter topics: `<topic>-dead-letter`, as shared::dead_letter::topic_for names them
    // (the replay commands pull a subscription of the same name).
    let dead_letter_rs = read("shared/src/dead_letter.rs");
    let suffix = dead_letter_rs
        .split("format!(\"{topic}")
        .nth(1)
        .and_then(|r| r.split_once('"'))
        .map(|(s, _)| s.to_owned())
        .expect("shared::dead_letter::topic_for formats the topic name");
    let module = read("terraform/modules/pubsub/main.tf");
    if !module.contains(&format!("\"${{p.topic}}{suffix}\"")) {
        problems.push(format!(
            "terraform/modules/pubsub does not name dead-letter topics \"<topic>{suffix}\" as the replay commands do"
        ));
    }
    if !module.contains("name                       = each.value\n  topic                      = google_pubsub_topic.dead_letter") {
        problems.push("the dead-letter pull subscriptions are not named like their topics (DEAD_LETTER_SUBSCRIPTION's default)".to_owned());
    }

    // The streamer's pull subscription: READY_SUBSCRIPTION's default is "<ready topic>-streamer".
    let config = read("host-streamer/src/config.rs");
    let streamer_suffix = config
        .split("\"READY_SUBSCRIPTION\",")
        .nth(1)
        .and_then(|r| r.split("format!(\"{}").nth(1))
        .and_then(|r| r.split_once('"'))
        .map(|(s, _)| s.to_owned())
        .expect("host-streamer's READY_SUBSCRIPTION default is format!(\"{}-...\", ..)");
    let default_subscription = format!("{}{streamer_suffix}", rust["Ready"]);
    let tf_subscription = tf.resolve("local.ready_subscription");
    if tf_subscription != default_subscription {
        problems.push(format!(
            "terraform's streamer subscription is {tf_subscription}; the host-streamer's default is {default_subscription}"
        ));
    }
    let streamer = tf
        .deployed()
        .into_iter()
        .find(|d| d.readme_name == "host-streamer")
        .unwrap();
    match streamer.env.get("READY_SUBSCRIPTION").map(|v| tf.resolve(v)) {
        Some(s) if s == tf_subscription => {}
        other => problems.push(format!(
            "the host-streamer's READY_SUBSCRIPTION is {other:?}, not the subscription terraform creates ({tf_subscription})"
        )),
    }
    if pubsub
        .get("ready_subscription")
        .is_none_or(|v| v.trim() != "local.ready_subscription")
    {
        problems.push("module pubsub does not create local.ready_subscription".to_owned());
    }
    report(&problems);
}

#[test]
fn buckets_are_terraforms_and_readable_by_the_services_that_use_them() {
    let tf = Terraform::load();
    let table = readme_table();
    let storage_module = read("terraform/modules/storage/main.tf");
    let storage = tf.module("storage");
    let mut problems = Vec::new();
    for d in tf
        .deployed()
        .iter()
        .filter(|d| d.readme_name != "ingest migrate")
    {
        for (name, row) in table.iter().filter(|(n, r)| is_bucket_var(n, r)) {
            if !used_by(row, d.readme_name) {
                continue;
            }
            let Some(value) = d.env.get(name) else {
                problems.push(format!(
                    "{} reads {name} but terraform does not set it",
                    d.readme_name
                ));
                continue;
            };
            // "gs://${module.storage.uploads_bucket}" -> uploads
            let Some(output) = value
                .strip_prefix("\"gs://${module.storage.")
                .and_then(|r| r.strip_suffix("}\""))
            else {
                problems.push(format!(
                    "{}: {name} = {value} is not a bucket of module.storage",
                    d.readme_name
                ));
                continue;
            };
            if !storage_module.contains(&format!("output \"{output}\"")) {
                problems.push(format!(
                    "{}: {name} names module.storage.{output}, which does not exist",
                    d.readme_name
                ));
            }
            let bucket = output.trim_end_matches("_bucket");
            let grants = storage
                .get(&format!("{bucket}_iam"))
                .map(|v| named_accounts(v))
                .unwrap_or_default();
            if !grants.contains(&d.account) {
                problems.push(format!(
                    "{} reads {name} (bucket {bucket}) but module.storage grants its account nothing there",
                    d.readme_name
                ));
            }
        }
    }
    report(&problems);
}

#[test]
fn secrets_come_from_secret_manager_and_reach_only_the_services_that_mount_them() {
    let tf = Terraform::load();
    let table = readme_table();
    let read_by_rust = rust_env_names();
    let mut problems = Vec::new();

    // Who may read each secret, as terraform grants it.
    let secrets = tf.module("secrets");
    let accessors_body =
        object_body(&secrets["accessors"]).expect("module secrets: accessors is an object");
    let mut granted: BTreeMap<String, BTreeSet<String>> = assignments(accessors_body)
        .into_iter()
        .map(|(k, v)| (k, named_accounts(&v)))
        .collect();
    granted.insert(
        "DATABASE_URL".to_owned(),
        named_accounts(&tf.module("database")["url_accessors"]),
    );

    for name in granted.keys() {
        if !read_by_rust.contains(name) || !table.contains_key(name) {
            problems.push(format!(
                "terraform keeps secret {name}, which no service reads or README lists"
            ));
        }
    }

    let mut mounted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for d in tf.deployed() {
        for name in d.env.keys().filter(|n| is_secret(n)) {
            problems.push(format!(
                "{}: {name} is a credential set as a plain variable, not from Secret Manager",
                d.readme_name
            ));
        }
        for (name, secret) in &d.secret_env {
            if !is_secret(name) {
                problems.push(format!(
                    "{}: {name} comes from Secret Manager but is not a credential",
                    d.readme_name
                ));
            }
            let expected = match name.as_str() {
                "DATABASE_URL" => "module.database.url_secret_id".to_owned(),
                _ => format!("module.secrets.ids[\"{name}\"]"),
            };
            if secret.trim() != expected {
                problems.push(format!(
                    "{}: {name} is mounted from {secret}, not {expected}",
                    d.readme_name
                ));
            }
            mounted
                .entry(name.clone())
                .or_default()
                .insert(d.account.clone());
        }
        // Every credential the service reads (README) must be mounted.
        for (name, row) in table.iter().filter(|(n, _)| is_secret(n)) {
            let migrate_skips = d.readme_name == "ingest migrate" && name != "DATABASE_URL";
            if used_by(row, d.readme_name) && !migrate_skips && !d.secret_env.contains_key(name) {
                // LiveKit keys are needed only with LIVEKIT_URL; OpenAI's only without local
                // providers, and the images carry no local models.
                problems.push(format!(
                    "{} reads {name} but terraform mounts no secret for it",
                    d.readme_name
                ));
            }
        }
    }
    for (name, accounts) in &granted {
        let users = mounted.get(name).cloned().unwrap_or_default();
        for extra in accounts.difference(&users) {
            problems.push(format!(
                "account {extra} may read secret {name} but mounts it nowhere"
            ));
        }
        for missing in users.difference(accounts) {
            problems.push(format!(
                "{missing} mounts secret {name} but may not read it"
            ));
        }
    }
    for name in mounted.keys().filter(|n| !granted.contains_key(*n)) {
        problems.push(format!(
            "{name} is mounted but terraform keeps no such secret"
        ));
    }
    report(&problems);
}

// ---------------------------------------------------------------------------------------------
// The reader itself, on small inputs, so that a passing check above means something.
// ---------------------------------------------------------------------------------------------

#[test]
fn the_block_reader_finds_nested_assignments() {
    let text = r#"
module "svc" {
  source = "./x" # comment { not a brace
  env = merge(local.common_env, {
    A_B  = "x"
    C_D  = local.topics.ready
  })
  secret_env = {
    DATABASE_URL = module.database.url_secret_id
  }
  nested {
    inner = 1
  }
  list = [module.identities.emails["a"], module.identities.emails["b-c"]]
}
"#;
    let m = assignments(block(text, "module \"svc\"").unwrap());
    assert_eq!(
        m.keys().collect::<Vec<_>>(),
        ["env", "list", "secret_env", "source"]
    );
    let env = assignments(object_body(&m["env"]).unwrap());
    assert_eq!(env["A_B"], "\"x\"");
    assert_eq!(env["C_D"], "local.topics.ready");
    assert_eq!(
        named_accounts(&m["list"]).into_iter().collect::<Vec<_>>(),
        ["a", "b-c"]
    );
    assert!(block(text, "module \"other\"").is_none());
}

#[test]
fn the_rust_reader_sees_every_kind_of_variable_read() {
    let names = rust_env_names();
    // Direct reads, a prefix-built name, a topic variable, a platform variable, a list loop.
    for n in [
        "DATABASE_URL",
        "PUSH_AUDIENCE",
        "OPERATOR_JWKS_URL",
        "AUTH_JWT_ISSUER",
        "TOPIC_SUBMISSION_READY",
        "LIVEKIT_API_SECRET",
        "MODERATION_THRESHOLDS",
    ] {
        assert!(names.contains(n), "{n} not found among {names:?}");
    }
    assert!(!names.contains("A_OPUS"), "codec ids are not variables");
}

#[test]
fn alerts_watch_what_the_services_log_and_serve() {
    let tf = Terraform::load();
    let monitoring = tf.module("monitoring");
    let mut problems = Vec::new();
    // The dead-air alert counts a log line: the watchdog must still write it.
    let message = unquote(&monitoring["dead_air_message"]).expect("dead_air_message is a literal");
    let logs_it = rust_sources().iter().any(|(path, code)| {
        path.starts_with(root().join("host-streamer")) && code.contains(&message)
    });
    if !logs_it {
        problems.push(format!(
            "the dead-air alert looks for {message:?}, which the host-streamer never logs"
        ));
    }
    // The services the alerts name are the ones terraform deploys.
    let deployed: BTreeSet<String> = ["ingest", "embed", "moderate", "host-streamer"]
        .map(String::from)
        .into();
    let mut named = BTreeSet::new();
    named.insert(unquote(&monitoring["streamer_service"]).expect("streamer_service is a literal"));
    named.extend(
        monitoring["http_services"]
            .split('"')
            .skip(1)
            .step_by(2)
            .map(String::from),
    );
    for name in named.difference(&deployed) {
        problems.push(format!(
            "an alert watches service {name}, which terraform does not deploy"
        ));
    }
    for (module, service) in [
        ("ingest", "ingest"),
        ("embed", "embed"),
        ("moderate", "moderate"),
        ("host_streamer", "host-streamer"),
    ] {
        let m = tf.module(module);
        if m.get("name").and_then(|v| unquote(v)).as_deref() != Some(service) {
            problems.push(format!(
                "module {module} does not create the Cloud Run service {service}"
            ));
        }
    }
    report(&problems);
}
