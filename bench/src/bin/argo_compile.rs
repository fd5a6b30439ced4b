//! `argo_compile`: the Argo compiler over the upstream corpus. Prints numbers as
//! markdown; asserts nothing.
//!
//! Per corpus pipeline: compile time (IR → Workflow YAML, median of `--repeats`),
//! the Workflow's size next to upstream's compiled Workflow (the golden) for the
//! same pipeline, and the pods of one run for both, counted by walking each
//! Workflow as Argo would with every `when` true: a first run (nothing cached) and a
//! rerun where every task with caching on hits. Then a `ParallelFor` of
//! `--items` items, static and from a run parameter.
//!
//! `cargo run --release -p kfpd-bench --bin argo_compile -- --help`

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use kfpd_ir::spec::{DagSpec, PipelineSpec, PipelineTaskSpec};
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(
    name = "argo_compile",
    about = "Measures kfpd's Argo compiler on the corpus"
)]
struct Args {
    /// Compiles per pipeline; the median is reported.
    #[arg(long, default_value_t = 20)]
    repeats: usize,
    /// Items of the large ParallelFor.
    #[arg(long, default_value_t = 1000)]
    items: usize,
    /// Only the pods table (markdown, for docs/argo.md).
    #[arg(long)]
    pods_only: bool,
}

struct Row {
    path: String,
    golden: String,
}

fn manifest(corpus: &Path) -> Result<Vec<Row>> {
    let text = std::fs::read_to_string(corpus.join("MANIFEST.tsv")).context("MANIFEST.tsv")?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|line| {
            let columns: Vec<&str> = line.split('\t').collect();
            (columns.get(1) != Some(&"REJECTED")).then(|| Row {
                path: columns[0].to_string(),
                golden: columns.get(5).copied().unwrap_or_default().to_string(),
            })
        })
        .collect())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let corpus = kfpd_testdata::Dir::Corpus
        .find()
        .map_err(|missing| anyhow::anyhow!("{missing}"))?;
    let golden_dir = kfpd_testdata::Dir::ArgoGolden.locate();
    let options = kfpd_argo::Options::default();

    let mut table = Vec::new();
    let mut totals = Totals::default();
    for row in manifest(&corpus)? {
        let path = corpus.join(&row.path);
        let bytes = std::fs::read(&path).with_context(|| row.path.clone())?;
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let package = kfpd_ir::read_package(&name, &bytes)
            .with_context(|| format!("{}: cannot be read", row.path))?;

        let mut times = Vec::new();
        let mut yaml = String::new();
        for _ in 0..args.repeats.max(1) {
            let start = Instant::now();
            yaml = kfpd_argo::compile_yaml(&package, &options)
                .with_context(|| format!("{}: does not compile", row.path))?;
            times.push(start.elapsed());
        }
        times.sort();
        let median = times[times.len() / 2];
        let ours: Value = serde_yaml::from_str(&yaml)?;
        let spec = package.spec();
        let items = |path: &[String]| loop_items(spec, path).0;
        let kfpd_first = kfpd_argo::pods::count(&ours, &items, &|_, _| false);
        let kfpd_cached = kfpd_argo::pods::count(&ours, &items, &|path, template| {
            cached_pod(spec, path, template, false)
        });
        let dynamic = dynamic_loops(spec);

        let golden = golden_dir
            .as_ref()
            .filter(|_| !row.golden.is_empty())
            .map(|dir| dir.join(&row.golden))
            .filter(|p| p.is_file());
        let upstream = match &golden {
            Some(file) => {
                let text = std::fs::read_to_string(file)?;
                let workflow: Value = serde_yaml::from_str(&text)?;
                let first = kfpd_argo::pods::count(&workflow, &items, &|_, _| false);
                let cached = kfpd_argo::pods::count(&workflow, &items, &|path, template| {
                    cached_pod(spec, path, template, true)
                });
                Some((text.len(), first, cached))
            }
            None => None,
        };
        totals.add(
            median,
            yaml.len(),
            kfpd_first,
            kfpd_cached,
            upstream.as_ref(),
        );
        table.push(Line {
            path: row.path,
            median,
            size: yaml.len(),
            first: kfpd_first,
            cached: kfpd_cached,
            dynamic,
            upstream,
        });
    }

    if !args.pods_only {
        println!("## Compile time and Workflow size\n");
        println!(
            "{} pipelines, compile (IR → YAML) median of {} runs each.\n",
            table.len(),
            args.repeats
        );
        println!("| pipeline | compile µs | kfpd bytes | upstream bytes | kfpd / upstream |");
        println!("|---|---:|---:|---:|---:|");
        for line in &table {
            let (up, ratio) = match &line.upstream {
                Some((bytes, _, _)) => (
                    bytes.to_string(),
                    format!("{:.2}", line.size as f64 / *bytes as f64),
                ),
                None => ("–".into(), "–".into()),
            };
            println!(
                "| {} | {} | {} | {up} | {ratio} |",
                line.path,
                line.median.as_micros(),
                line.size
            );
        }
        println!(
            "| **all** | {} (sum) | {} | {} | {:.2} |\n",
            totals.time.as_micros(),
            totals.size,
            totals.upstream_size,
            totals.size_with_golden as f64 / totals.upstream_size.max(1) as f64
        );
    }

    println!("## Pods per run\n");
    println!(
        "Every `when` taken as true; a loop runs its static items, or the length of a \
         run parameter's default; `*`: a loop over a task's output, counted as 1 item. \
         kfpd counts Argo's agent pod (one per Workflow) in its total. Rerun: every \
         task with caching on hits.\n"
    );
    println!("| pipeline | kfpd first run | upstream first run | kfpd rerun | upstream rerun |");
    println!("|---|---:|---:|---:|---:|");
    for line in &table {
        let star = if line.dynamic { " *" } else { "" };
        let (first, cached) = match &line.upstream {
            Some((_, first, cached)) => (first.total().to_string(), cached.total().to_string()),
            None => ("–".into(), "–".into()),
        };
        println!(
            "| {}{star} | {} | {first} | {} | {cached} |",
            line.path,
            line.first.total(),
            line.cached.total()
        );
    }
    println!(
        "| **all (with a golden)** | {} | {} | {} | {} |\n",
        totals.kfpd_first, totals.upstream_first, totals.kfpd_cached, totals.upstream_cached
    );

    if !args.pods_only {
        parallel_for(args.items, &options)?;
    }
    Ok(())
}

struct Line {
    path: String,
    median: Duration,
    size: usize,
    first: kfpd_argo::pods::Count,
    cached: kfpd_argo::pods::Count,
    dynamic: bool,
    upstream: Option<(usize, kfpd_argo::pods::Count, kfpd_argo::pods::Count)>,
}

#[derive(Default)]
struct Totals {
    time: Duration,
    size: usize,
    size_with_golden: usize,
    upstream_size: usize,
    kfpd_first: u64,
    kfpd_cached: u64,
    upstream_first: u64,
    upstream_cached: u64,
}

impl Totals {
    fn add(
        &mut self,
        time: Duration,
        size: usize,
        first: kfpd_argo::pods::Count,
        cached: kfpd_argo::pods::Count,
        upstream: Option<&(usize, kfpd_argo::pods::Count, kfpd_argo::pods::Count)>,
    ) {
        self.time += time;
        self.size += size;
        if let Some((bytes, up_first, up_cached)) = upstream {
            self.size_with_golden += size;
            self.upstream_size += bytes;
            self.kfpd_first += first.total();
            self.kfpd_cached += cached.total();
            self.upstream_first += up_first.total();
            self.upstream_cached += up_cached.total();
        }
    }
}

/// Every DAG of the pipeline with its tasks.
fn dags(spec: &PipelineSpec) -> Vec<&DagSpec> {
    let mut out: Vec<&DagSpec> = spec.root.dag.iter().collect();
    out.extend(spec.components.values().filter_map(|c| c.dag.as_ref()));
    out
}

fn find_task<'s>(spec: &'s PipelineSpec, name: &str) -> Option<&'s PipelineTaskSpec> {
    dags(spec).into_iter().find_map(|d| d.tasks.get(name))
}

/// Items of the loop nearest the end of `path`; `(1, true)` when they come from
/// a task's output.
fn loop_items(spec: &PipelineSpec, path: &[String]) -> (u64, bool) {
    for name in path.iter().rev() {
        let Some(task) = find_task(spec, name) else {
            continue;
        };
        if task.artifact_iterator.is_some() {
            return (1, true);
        }
        let Some(iterator) = &task.parameter_iterator else {
            continue;
        };
        if let Some(raw) = &iterator.items.raw {
            let items: Value = serde_json::from_str(raw).unwrap_or(json!([]));
            return (items.as_array().map_or(1, |a| a.len() as u64), false);
        }
        let input = iterator.items.input_parameter.as_deref().unwrap_or("");
        let root_parameter = task
            .inputs
            .parameters
            .get(input)
            .and_then(|b| b.component_input_parameter.as_deref())
            .and_then(|p| spec.root.input_definitions.parameters.get(p))
            .and_then(|p| p.default_value.as_ref());
        return match root_parameter {
            Some(Value::Array(items)) => (items.len() as u64, false),
            Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Array(items)) => (items.len() as u64, false),
                _ => (1, true),
            },
            _ => (1, true),
        };
    }
    (1, false)
}

fn dynamic_loops(spec: &PipelineSpec) -> bool {
    dags(spec).into_iter().any(|d| {
        d.tasks
            .keys()
            .any(|name| loop_items(spec, std::slice::from_ref(name)).1)
    })
}

/// Whether a pod of a rerun is skipped by a cache hit. kfpd: the task's own pod.
/// Upstream: the executor pod below the task's driver (its driver pod still runs).
fn cached_pod(spec: &PipelineSpec, path: &[String], template: &Value, upstream: bool) -> bool {
    if template.get("container").is_none() {
        return false;
    }
    let task_name = if upstream {
        if path.last().map(String::as_str) != Some("executor") {
            return false;
        }
        path.len().checked_sub(2).map(|i| &path[i])
    } else {
        path.last()
    };
    task_name
        .and_then(|n| find_task(spec, n))
        .is_some_and(|t| t.caching_options.enable_cache)
}

/// A loop of `items` items over one container task: static items, and items from a
/// run parameter's default.
fn parallel_for(items: usize, options: &kfpd_argo::Options) -> Result<()> {
    let list: Vec<Value> = (0..items).map(|i| json!(format!("item-{i}"))).collect();
    println!("## A ParallelFor of {items} items\n");
    println!("| items from | Workflow bytes | pods per run | compile µs |");
    println!("|---|---:|---:|---:|");
    for (what, iterator, root_inputs) in [
        (
            "static list (`items.raw`)",
            json!({"itemInput": "pipelinechannel--loop-item", "items": {"raw": Value::Array(list.clone()).to_string()}}),
            json!({}),
        ),
        (
            "a run parameter",
            json!({"itemInput": "pipelinechannel--loop-item", "items": {"inputParameter": "pipelinechannel--things"}}),
            json!({"parameters": {"things": {"parameterType": "LIST", "defaultValue": list}}}),
        ),
    ] {
        let spec = json!({
            "components": {
                "comp-echo": {"executorLabel": "exec-echo",
                    "inputDefinitions": {"parameters": {"text": {"parameterType": "STRING"}}}},
                "comp-for-loop-1": {
                    "inputDefinitions": {"parameters": {
                        "pipelinechannel--loop-item": {"parameterType": "STRING"},
                        "pipelinechannel--things": {"parameterType": "LIST"}}},
                    "dag": {"tasks": {"echo": {
                        "componentRef": {"name": "comp-echo"}, "taskInfo": {"name": "echo"},
                        "inputs": {"parameters": {"text": {"componentInputParameter": "pipelinechannel--loop-item"}}}}}}}
            },
            "deploymentSpec": {"executors": {"exec-echo": {"container": {
                "image": "alpine", "command": ["echo"], "args": ["{{$.inputs.parameters['text']}}"]}}}},
            "pipelineInfo": {"name": "big-loop"},
            "root": {
                "inputDefinitions": root_inputs,
                "dag": {"tasks": {"for-loop-1": {
                    "componentRef": {"name": "comp-for-loop-1"}, "taskInfo": {"name": "for-loop-1"},
                    "inputs": {"parameters": {"pipelinechannel--things": {"componentInputParameter": "things"}}},
                    "parameterIterator": iterator}}}},
            "schemaVersion": "2.1.0", "sdkVersion": "kfp-2.15.0"
        });
        let mut spec = spec;
        if root_inputs_empty(&spec) {
            // No parameter: the loop task takes no input.
            spec["root"]["dag"]["tasks"]["for-loop-1"]["inputs"] = json!({});
        }
        let package = kfpd_ir::Package::from_parts(spec, None)
            .map_err(|e| anyhow::anyhow!("the loop pipeline is invalid: {e}"))?;
        let start = Instant::now();
        let yaml = kfpd_argo::compile_yaml(&package, options)?;
        let elapsed = start.elapsed();
        let workflow: Value = serde_yaml::from_str(&yaml)?;
        let pods = kfpd_argo::pods::count(&workflow, &|_| items as u64, &|_, _| false);
        println!(
            "| {what} | {} | {} | {} |",
            yaml.len(),
            pods.total(),
            elapsed.as_micros()
        );
    }
    println!(
        "\nThe items are not in the Workflow: the server expands them when the loop's \
         driver request asks, so the size does not grow with the items (etcd's limit is \
         1 MiB, 1,048,576 bytes).\n"
    );
    Ok(())
}

fn root_inputs_empty(spec: &Value) -> bool {
    spec["root"]["inputDefinitions"]
        .as_object()
        .is_none_or(|m| m.is_empty())
}
