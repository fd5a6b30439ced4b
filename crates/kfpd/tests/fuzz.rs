//! Fuzzing on the stable toolchain, as a normal test: a seeded generator mutates a
//! corpus of packages (YAML, JSON, zip, tar.gz with bombs, deep nesting, huge
//! numbers, links and `..`), pipeline specs, CEL expressions, filters and page
//! tokens. In process, the package reader, the IR validator and CEL must neither
//! panic nor hang, and memory stays bounded; through the real binary, every refusal
//! is a 4xx whose message names the problem and nothing refused is stored.
//!
//! Short by default; `KFPD_FUZZ_SECONDS` and `KFPD_FUZZ_SEED` change the budget and
//! the seed (`bench/fuzz.sh` runs it long and prints the figures). To find an input
//! that kills the process (a stack overflow cannot be caught), `KFPD_FUZZ_TRACE=1`
//! names each input on stderr and `KFPD_FUZZ_LAST=path` writes each CEL expression
//! there before it runs.

mod common;
mod hostile;

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hostile::{Budget, Upload};
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};

/// Mutations every run tries at least, whatever the time budget, so the short run
/// in the suite goes past the corpus.
const MIN_MUTATIONS: usize = 200;

/// Longest one input may take before it counts as a hang.
const HANG: Duration = Duration::from_secs(30);

/// Peak resident memory the in-process fuzzing may reach: the reader holds at most
/// a 32 MiB package, its decompressed text (bounded too) and the parsed spec.
const MEMORY_LIMIT_MIB: u64 = 1024;

/// Runs `work` on its own thread; a panic or a hang fails the test, naming the input.
///
/// With `KFPD_FUZZ_TRACE` set, each input is named on stderr before it runs, so one
/// that kills the process (a stack overflow cannot be caught) can be found.
fn guarded<T: Send + 'static>(what: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    if std::env::var_os("KFPD_FUZZ_TRACE").is_some() {
        eprintln!("fuzz input: {what}");
    }
    let (send, receive) = mpsc::channel();
    std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || {
            let result = std::panic::catch_unwind(AssertUnwindSafe(work));
            let _ = send.send(result);
        })
        .expect("spawn");
    match receive.recv_timeout(HANG) {
        Ok(Ok(value)) => value,
        Ok(Err(_)) => panic!("panicked on {what}"),
        Err(_) => panic!("no answer within {HANG:?} on {what}"),
    }
}

/// The start of a long text, for messages.
fn short(text: &str) -> String {
    text.chars().take(200).collect()
}

/// Query values are cut to this many bytes: longer URLs are refused by the client
/// before they are sent.
const MAX_QUERY_VALUE: usize = 16 * 1024;

fn cut(text: String) -> String {
    if text.len() <= MAX_QUERY_VALUE {
        return text;
    }
    let mut end = MAX_QUERY_VALUE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024)
}

fn describe(upload: &Upload) -> String {
    let head: String = String::from_utf8_lossy(&upload.bytes[..upload.bytes.len().min(120)]).into();
    format!(
        "{} ({} bytes, starting {head:?})",
        upload.name,
        upload.bytes.len()
    )
}

/// A structural mutation of a spec: a value replaced by a wrong type, a huge
/// number, deep nesting, or removed.
fn mutate_value(rng: &mut StdRng, value: &mut Value, depth: usize) {
    let replace = depth > 0 && rng.gen_range(0..6) == 0;
    if replace {
        *value = match rng.gen_range(0..7) {
            0 => Value::Null,
            1 => json!(1e308),
            2 => json!(u64::MAX),
            3 => json!("x".repeat(rng.gen_range(0..5000))),
            4 => json!([]),
            5 => (0..rng.gen_range(1..300)).fold(json!(1), |inner, _| json!([inner])),
            _ => json!({"": {"..": "../../etc/passwd"}}),
        };
        return;
    }
    match value {
        Value::Object(map) => {
            if !map.is_empty() && rng.gen_range(0..8) == 0 {
                let index = rng.gen_range(0..map.len());
                if let Some(key) = map.keys().nth(index).cloned() {
                    map.remove(&key);
                }
            }
            for child in map.values_mut() {
                if rng.gen_range(0..3) == 0 {
                    mutate_value(rng, child, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            for child in items.iter_mut() {
                if rng.gen_range(0..3) == 0 {
                    mutate_value(rng, child, depth + 1);
                }
            }
        }
        _ => {}
    }
}

#[test]
fn package_reader_validator_and_cel_survive_hostile_input() {
    let budget = Budget::from_env(15);
    let corpus = hostile::package_corpus();
    let started = Instant::now();
    // Packages: the corpus once, then mutations, for the first half of the budget.
    let mut rng = budget.rng(1);
    let (mut tried, mut accepted, mut specs) = (0u64, 0u64, 0u64);
    let mut valid_specs: Vec<Value> = Vec::new();
    while tried < (corpus.len() + MIN_MUTATIONS) as u64 || started.elapsed() < budget.seconds / 2 {
        let upload = match corpus.get(tried as usize) {
            Some(seed) => seed.clone(),
            None => hostile::mutated_upload(&mut rng, &corpus),
        };
        tried += 1;
        let what = describe(&upload);
        let outcome = guarded(&what, move || {
            kfpd_ir::read_package(&upload.name, &upload.bytes)
                .map(|package| package.pipeline_spec().clone())
                .map_err(|error| error.to_string())
        });
        match outcome {
            Ok(spec) => {
                accepted += 1;
                if valid_specs.len() < 64 {
                    valid_specs.push(spec);
                }
            }
            Err(message) => assert!(
                !message.trim().is_empty(),
                "refused without a message: {what}"
            ),
        }
    }
    // The IR validator on inline specs: accepted specs, structurally mutated.
    let validator_started = Instant::now();
    if !valid_specs.is_empty() {
        while validator_started.elapsed() < budget.seconds / 4 {
            let mut spec = valid_specs[rng.gen_range(0..valid_specs.len())].clone();
            mutate_value(&mut rng, &mut spec, 0);
            specs += 1;
            let what = format!("inline spec {}", short(&spec.to_string()));
            let outcome = guarded(&what, move || {
                kfpd_ir::parse_spec_value(&spec)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            });
            if let Err(message) = outcome {
                assert!(
                    !message.trim().is_empty(),
                    "refused without a message: {what}"
                );
            }
        }
    }
    // CEL conditions and selectors.
    let cel_started = Instant::now();
    let cel = hostile::cel_corpus();
    let mut expressions = 0u64;
    while expressions < (cel.len() + MIN_MUTATIONS) as u64
        || cel_started.elapsed() < budget.seconds / 4
    {
        let expression = match cel.get(expressions as usize) {
            Some(seed) => seed.clone(),
            None => {
                let base = &cel[rng.gen_range(0..cel.len())];
                let other = &cel[rng.gen_range(0..cel.len())];
                let base = &base.as_bytes()[..base.len().min(4096)];
                String::from_utf8_lossy(&hostile::mutate(
                    &mut rng,
                    base,
                    &other.as_bytes()[..other.len().min(4096)],
                ))
                .into()
            }
        };
        expressions += 1;
        let what = format!("CEL {:?}", short(&expression));
        if let Some(path) = std::env::var_os("KFPD_FUZZ_LAST") {
            let _ = std::fs::write(path, &expression);
        }
        guarded(&what, move || {
            let parameters = json!({"a": "x", "n": 3, "pipelinechannel--n": "3"});
            let parameters = parameters.as_object().cloned().unwrap_or_default();
            let condition =
                kfpd_core::cel::condition(&expression, &parameters, &Default::default());
            if let Err(message) = &condition {
                assert!(!message.is_empty());
            }
            let _ = kfpd_core::cel::select(&expression, &json!({"key": [1, "two", null]}));
        });
    }
    let peak = peak_rss_mib();
    println!(
        "fuzz in process: {tried} packages ({accepted} accepted), {specs} inline specs, \
         {expressions} CEL expressions in {:.1} s; peak RSS {peak} MiB (seed {})",
        started.elapsed().as_secs_f64(),
        budget.seed
    );
    assert!(peak < MEMORY_LIMIT_MIB, "peak RSS {peak} MiB");
}

/// Whether an answer is a refusal that names the problem.
fn named_refusal(status: u16, body: &Value) -> bool {
    let message = body["message"]
        .as_str()
        .or_else(|| body["error_message"].as_str())
        .unwrap_or_default();
    (400..500).contains(&status) && !message.trim().is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_refuses_hostile_uploads_filters_and_tokens_with_a_4xx() {
    let budget = Budget::from_env(15);
    let server = common::Server::start();
    let started = Instant::now();
    let mut rng = budget.rng(2);

    // Uploads: the corpus once, then mutations, for half the budget.
    let corpus = hostile::package_corpus();
    let (mut uploads, mut stored) = (0usize, 0u64);
    while uploads < corpus.len() + MIN_MUTATIONS / 4 || started.elapsed() < budget.seconds / 2 {
        let upload = match corpus.get(uploads) {
            Some(seed) => seed.clone(),
            None => hostile::mutated_upload(&mut rng, &corpus),
        };
        let what = describe(&upload);
        let query = format!("?name=fuzz-{uploads}");
        let (status, body) = server.upload(&query, &upload.name, upload.bytes).await;
        uploads += 1;
        if status == 200 {
            stored += 1;
            continue;
        }
        assert!(named_refusal(status, &body), "{what}: {status} {body}");
    }
    // Nothing refused was stored: the pipelines are exactly the accepted uploads.
    let (status, list) = server.get("/pipelines?page_size=1").await;
    assert_eq!(status, 200, "{list}");
    let total = list["total_size"].as_u64().unwrap_or_default();
    assert_eq!(
        total, stored,
        "{stored} uploads accepted, {total} pipelines stored"
    );

    // A real page token to mutate.
    for i in 0..3 {
        let (status, body) = server
            .post("/experiments", &json!({"display_name": format!("e{i}")}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (_, page) = server.get("/experiments?page_size=1").await;
    let token = page["next_page_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!token.is_empty(), "{page}");

    let filters = hostile::filter_corpus();
    let lists = ["/runs", "/experiments", "/pipelines", "/recurringruns"];
    let mut queries = 0usize;
    while queries < filters.len() + MIN_MUTATIONS || started.elapsed() < budget.seconds {
        let list = lists[rng.gen_range(0..lists.len())];
        let filter = match filters.get(queries) {
            Some(seed) => seed.clone(),
            None => {
                let base = &filters[rng.gen_range(0..filters.len())];
                String::from_utf8_lossy(&hostile::mutate(
                    &mut rng,
                    &base.as_bytes()[..base.len().min(8192)],
                    token.as_bytes(),
                ))
                .into()
            }
        };
        let page_token = match rng.gen_range(0..3) {
            0 => String::new(),
            1 => token.clone(),
            _ => String::from_utf8_lossy(&hostile::mutate(
                &mut rng,
                token.as_bytes(),
                filter.as_bytes(),
            ))
            .into(),
        };
        let (filter, page_token) = (cut(filter), cut(page_token));
        let sort_by = [
            "",
            "created_at desc",
            "name",
            "bogus",
            "display_name sideways",
        ][rng.gen_range(0..5)];
        queries += 1;
        let response = server
            .client
            .get(server.url(list))
            .query(&[
                ("filter", filter.as_str()),
                ("page_token", page_token.as_str()),
                ("sort_by", sort_by),
            ])
            .send()
            .await
            .expect("list");
        let (status, body) = common::read(response).await;
        assert!(
            status == 200 || named_refusal(status, &body),
            "{list} filter={:?} page_token={:?} sort_by={sort_by:?}: {status} {body}",
            short(&filter),
            short(&page_token)
        );
    }
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200);
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
    println!(
        "fuzz through the server: {uploads} uploads ({stored} stored), {queries} list queries \
         with hostile filters and page tokens in {:.1} s (seed {})",
        started.elapsed().as_secs_f64(),
        budget.seed
    );
}
