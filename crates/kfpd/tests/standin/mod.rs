//! A stand-in for Argo Workflows, for tests only (there is no cluster here).
//!
//! It runs a compiled Workflow as Argo's controller would, on this machine: it walks
//! the DAG templates in dependency order (`depends`, `when`, `withSequence`,
//! `withItems`, `withParam`, `parallelism`, `failFast`, `target`), substitutes the
//! Argo variables the compiler uses (`{{inputs.parameters.x}}`, `{{item}}`,
//! `{{workflow.name}}`, `{{workflow.uid}}`, `{{retries}}`, `{{pod.name}}`,
//! `{{tasks.X.outputs.result}}` and the `{{=jsonpath(...)}}` expressions), sends
//! each `http` driver request with the real `kfpd driver`, and runs each pod
//! template's containers as local processes (the init container's
//! `kfpd launcher --copy`, then the real `kfpd launcher`), retrying them as
//! `retryStrategy` says. `resource` templates create and delete objects in an
//! in-memory stand-in for the Kubernetes API; as each ends, the Workflow (the
//! resource nodes' statuses so far) is reported to the server as the persistence
//! agent would (`POST /apis/v2beta1/workflows`), since no launcher reports on them.
//!
//! What it does not do: schedule pods on nodes, enforce resources, node selectors,
//! tolerations or affinity, wait for retry backoff, or isolate a pod's filesystem
//! (a pod sees the host's, with its own work directory and volumes). Fields of the
//! Workflow it does not implement are refused, so a compiler change that emits one
//! fails the tests instead of being ignored.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::Value;

/// A node's phase, as Argo names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Succeeded,
    Failed,
    Error,
    Skipped,
    Omitted,
}

impl Phase {
    fn completed(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed | Phase::Error)
    }

    fn failed(self) -> bool {
        matches!(self, Phase::Failed | Phase::Error)
    }
}

/// What kind of node Argo would show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dag,
    /// The expansion of a task over its items.
    Group,
    Pod,
    Http,
    Resource,
    /// A node that was never run (`when` false, `depends` not met, no items).
    NotRun,
}

/// One node of the run, as `argo get` would list it.
#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub template: String,
    pub kind: Kind,
    pub phase: Phase,
    pub message: String,
    /// Pod attempts (retries included); 0 for other nodes.
    pub attempts: u32,
    /// How long the node's processes ran (the driver request, the pod's containers).
    pub elapsed: Duration,
}

/// What the cluster around the Workflow holds, and where pods live on this machine.
pub struct Cluster {
    /// The `kfpd` executable, which the kfpd image holds.
    pub kfpd: PathBuf,
    /// The image the compiler was given for `kfpd` (`Options::kfpd_image`).
    pub kfpd_image: String,
    pub namespace: String,
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
    /// Pods' work directories and volumes go under here.
    pub dir: PathBuf,
    /// Python environments standing in for images (as the local engine makes them).
    pub images: kfpd_runtime::Runtime,
    /// The environment that stands for an image, when not the image's own: the
    /// local engine keeps one per image and kfp version a command installs.
    pub image_environments: BTreeMap<String, String>,
}

/// How the Workflow ended.
#[derive(Debug)]
pub struct Outcome {
    pub name: String,
    pub phase: Phase,
    pub nodes: Vec<Node>,
    /// Kubernetes objects `resource` templates left behind (`kind/name`).
    pub objects: BTreeSet<String>,
}

impl Outcome {
    pub fn pods(&self) -> usize {
        self.nodes
            .iter()
            .filter(|node| node.kind == Kind::Pod)
            .count()
    }

    /// Node names and phases, for messages.
    pub fn summary(&self) -> String {
        self.nodes
            .iter()
            .map(|node| {
                let message = if node.message.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", node.message.trim())
                };
                format!(
                    "{} [{}] {:?}{message}",
                    node.name, node.template, node.phase
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Runs `workflow` (the YAML the compiler wrote, parsed) to its end.
pub async fn run(workflow: &Value, cluster: Arc<Cluster>) -> Outcome {
    check_keys(
        workflow,
        "the Workflow",
        &["apiVersion", "kind", "metadata", "spec"],
    );
    assert_eq!(workflow["apiVersion"], "argoproj.io/v1alpha1");
    assert_eq!(workflow["kind"], "Workflow");
    let spec = &workflow["spec"];
    check_keys(
        spec,
        "spec",
        &[
            "entrypoint",
            "serviceAccountName",
            "podMetadata",
            "securityContext",
            "activeDeadlineSeconds",
            "ttlStrategy",
            "volumeClaimTemplates",
            "templates",
        ],
    );
    let prefix = workflow["metadata"]["generateName"]
        .as_str()
        .expect("metadata.generateName")
        .to_string();
    let suffix: String = uuid::Uuid::new_v4().simple().to_string()[..5].to_string();
    let name = format!("{prefix}{suffix}");
    let templates: HashMap<String, Value> = spec["templates"]
        .as_array()
        .expect("spec.templates")
        .iter()
        .map(|template| {
            let name = template["name"]
                .as_str()
                .expect("template name")
                .to_string();
            (name, template.clone())
        })
        .collect();
    let launcher = cluster.dir.join("kfpd-image").join("kfpd");
    copy_launcher_once(&cluster, &launcher).await;
    // The server and run the driver requests go to take the reports too.
    let report_to = templates
        .values()
        .filter_map(|template| template["http"]["url"].as_str())
        .find_map(|url| {
            let (server, run_id) = url
                .strip_suffix("/drive")?
                .split_once("/apis/v2beta1/runs/")?;
            Some((server.to_string(), run_id.to_string()))
        });
    let walk = Arc::new(Walk {
        cluster,
        report_to,
        spec: spec.clone(),
        reported: Mutex::new(serde_json::Map::new()),
        templates,
        name: name.clone(),
        uid: uuid::Uuid::new_v4().to_string(),
        nodes: Mutex::new(Vec::new()),
        objects: Mutex::new(BTreeSet::new()),
        pod_counter: AtomicUsize::new(0),
        launcher,
        claim_templates: spec["volumeClaimTemplates"]
            .as_array()
            .map(|claims| {
                claims
                    .iter()
                    .filter_map(|claim| claim["metadata"]["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    });
    let entrypoint = spec["entrypoint"].as_str().expect("spec.entrypoint");
    let (phase, _) = Arc::clone(&walk)
        .run_template(entrypoint.to_string(), BTreeMap::new(), name.clone())
        .await;
    let nodes = walk.nodes.lock().expect("nodes").clone();
    let objects = walk.objects.lock().expect("objects").clone();
    Outcome {
        name,
        phase,
        nodes,
        objects,
    }
}

/// The init container's copy of `kfpd`, made once with the real
/// `kfpd launcher --copy` and linked into every pod (a debug build is large).
async fn copy_launcher_once(cluster: &Cluster, launcher: &Path) {
    static COPIED: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one = COPIED.lock().await;
    if launcher.is_file() {
        return;
    }
    let status = tokio::process::Command::new(&cluster.kfpd)
        .args(["launcher", "--copy"])
        .arg(launcher)
        .status()
        .await
        .expect("run kfpd launcher --copy");
    assert!(status.success(), "kfpd launcher --copy failed: {status}");
}

struct Walk {
    cluster: Arc<Cluster>,
    /// The server's base URL and the run's id, from the driver requests' URL.
    report_to: Option<(String, String)>,
    /// The Workflow's spec, reported with its status.
    spec: Value,
    /// Node statuses of the resource nodes that ended, by node id.
    reported: Mutex<serde_json::Map<String, Value>>,
    templates: HashMap<String, Value>,
    name: String,
    uid: String,
    nodes: Mutex<Vec<Node>>,
    /// Kubernetes objects made by `resource` templates: `kind/name`.
    objects: Mutex<BTreeSet<String>>,
    pod_counter: AtomicUsize,
    launcher: PathBuf,
    claim_templates: BTreeSet<String>,
}

type Params = BTreeMap<String, String>;

impl Walk {
    fn record(&self, node: Node) {
        self.nodes.lock().expect("nodes").push(node);
    }

    /// Runs template `name` with input `arguments` as node `node`; returns its
    /// phase and `outputs.result`.
    fn run_template(
        self: Arc<Self>,
        name: String,
        arguments: Params,
        node: String,
    ) -> BoxFuture<'static, (Phase, Option<String>)> {
        Box::pin(async move {
            let template = self
                .templates
                .get(&name)
                .unwrap_or_else(|| panic!("template {name:?} does not exist"))
                .clone();
            check_keys(
                &template,
                &format!("template {name}"),
                &[
                    "name",
                    "inputs",
                    "dag",
                    "container",
                    "initContainers",
                    "http",
                    "resource",
                    "metadata",
                    "retryStrategy",
                    "activeDeadlineSeconds",
                    "podSpecPatch",
                    "volumes",
                    "nodeSelector",
                    "tolerations",
                    "affinity",
                    "securityContext",
                    "parallelism",
                ],
            );
            let inputs = template_inputs(&template, &name, arguments);
            if template.get("dag").is_some() {
                let phase = Arc::clone(&self).run_dag(&template, &inputs, &node).await;
                self.record(Node {
                    name: node,
                    template: name,
                    kind: Kind::Dag,
                    phase,
                    message: String::new(),
                    attempts: 0,
                    elapsed: Duration::ZERO,
                });
                return (phase, None);
            }
            if template.get("http").is_some() {
                return self.run_http(&template, &name, &inputs, node).await;
            }
            if template.get("resource").is_some() {
                return (
                    self.run_resource(&template, &name, &inputs, node).await,
                    None,
                );
            }
            if template.get("container").is_some() {
                return (self.run_pod(&template, &name, &inputs, node).await, None);
            }
            panic!(
                "template {name:?} is neither a DAG, a container, an http nor a resource template"
            );
        })
    }

    /// A DAG template: its tasks in dependency order, as Argo's DAG executor.
    async fn run_dag(self: Arc<Self>, template: &Value, inputs: &Params, node: &str) -> Phase {
        let dag = &template["dag"];
        check_keys(dag, "dag", &["tasks", "target", "failFast"]);
        let fail_fast = dag["failFast"].as_bool().unwrap_or(true);
        let parallelism = template["parallelism"].as_u64().map(|n| n as usize);
        let tasks: Vec<Task> = dag["tasks"]
            .as_array()
            .expect("dag.tasks")
            .iter()
            .map(Task::parse)
            .collect();
        let names: BTreeSet<&str> = tasks.iter().map(|task| task.name.as_str()).collect();
        for task in &tasks {
            for dependency in &task.dependencies {
                assert!(
                    names.contains(dependency.as_str()),
                    "task {:?} depends on {dependency:?}, which is not in its DAG",
                    task.name
                );
            }
        }
        let mut done: HashMap<String, (Phase, Option<String>)> = HashMap::new();
        let mut started: BTreeSet<String> = BTreeSet::new();
        // Items waiting for a place (`parallelism`), in order.
        let mut waiting: Vec<(String, usize, Params)> = Vec::new();
        let mut groups: HashMap<String, Group> = HashMap::new();
        let mut running = FuturesUnordered::new();
        let mut any_failed = false;
        loop {
            // Start every task whose dependencies ended.
            for task in &tasks {
                if started.contains(&task.name) || any_failed && fail_fast {
                    continue;
                }
                if !task
                    .dependencies
                    .iter()
                    .all(|dependency| done.contains_key(dependency))
                {
                    continue;
                }
                started.insert(task.name.clone());
                let node_name = format!("{node}.{}", task.name);
                if let Some(depends) = &task.depends {
                    let phases: HashMap<&str, Phase> = done
                        .iter()
                        .map(|(name, (phase, _))| (name.as_str(), *phase))
                        .collect();
                    if !evaluate_depends(depends, &phases) {
                        self.not_run(&node_name, &task.template, Phase::Omitted, "depends");
                        done.insert(task.name.clone(), (Phase::Omitted, None));
                        continue;
                    }
                }
                let scope = |item: Option<&str>| Scope {
                    walk: &self,
                    inputs,
                    done: &done,
                    item: item.map(str::to_string),
                };
                let items = task.items(&scope(None));
                if items.as_ref().is_some_and(Vec::is_empty) {
                    self.not_run(&node_name, &task.template, Phase::Skipped, "empty items");
                    done.insert(task.name.clone(), (Phase::Skipped, None));
                    continue;
                }
                let expanded: Vec<Option<String>> = match items {
                    Some(items) => items.into_iter().map(Some).collect(),
                    None => vec![None],
                };
                let mut group = Group {
                    expanded: expanded.len(),
                    ended: Vec::new(),
                    is_group: expanded.len() > 1 || expanded[0].is_some(),
                };
                for (index, item) in expanded.iter().enumerate() {
                    let scope = scope(item.as_deref());
                    if let Some(when) = &task.when {
                        let condition = scope.substitute(when);
                        if !evaluate_when(&condition) {
                            group.ended.push((Phase::Skipped, None));
                            self.not_run(&node_name, &task.template, Phase::Skipped, &condition);
                            continue;
                        }
                    }
                    let arguments: Params = task
                        .arguments
                        .iter()
                        .map(|(name, value)| (name.clone(), scope.substitute(value)))
                        .collect();
                    waiting.push((task.name.clone(), index, arguments));
                }
                if group.ended.len() == group.expanded {
                    done.insert(task.name.clone(), (group.phase(), None));
                } else {
                    groups.insert(task.name.clone(), group);
                }
            }
            // Fail-fast: nothing new once a task of this DAG failed.
            if any_failed && fail_fast {
                for (task, _, _) in waiting.drain(..) {
                    if let Some(group) = groups.get_mut(&task) {
                        group.expanded -= 1;
                    }
                }
                let finished: Vec<String> = groups
                    .iter()
                    .filter(|(_, group)| group.ended.len() == group.expanded)
                    .map(|(name, _)| name.clone())
                    .collect();
                for name in finished {
                    if let Some(group) = groups.remove(&name) {
                        done.insert(name, (group.phase(), None));
                    }
                }
            }
            while !waiting.is_empty() && parallelism.is_none_or(|limit| running.len() < limit) {
                let (task_name, index, arguments) = waiting.remove(0);
                let task = tasks
                    .iter()
                    .find(|task| task.name == task_name)
                    .expect("task");
                let node_name = if groups.get(&task_name).is_some_and(|g| g.is_group) {
                    format!("{node}.{task_name}({index})")
                } else {
                    format!("{node}.{task_name}")
                };
                let walk = Arc::clone(&self);
                let template = task.template.clone();
                running.push(async move {
                    let (phase, result) = walk.run_template(template, arguments, node_name).await;
                    (task_name, phase, result)
                });
            }
            let Some((task_name, phase, result)) = running.next().await else {
                break;
            };
            any_failed |= phase.failed();
            let group = groups
                .get_mut(&task_name)
                .expect("a running task has a group");
            group.ended.push((phase, result));
            if group.ended.len() == group.expanded {
                let group = groups.remove(&task_name).expect("group");
                let ended = if group.is_group {
                    (group.phase(), None)
                } else {
                    group.ended.into_iter().next().expect("one node")
                };
                done.insert(task_name, ended);
            }
        }
        if any_failed && fail_fast {
            return Phase::Failed;
        }
        dag_phase(dag, &tasks, &done)
    }

    fn not_run(&self, node: &str, template: &str, phase: Phase, why: &str) {
        self.record(Node {
            name: node.to_string(),
            template: template.to_string(),
            kind: Kind::NotRun,
            phase,
            message: why.to_string(),
            attempts: 0,
            elapsed: Duration::ZERO,
        });
    }

    /// The driver request, sent as `kfpd driver` (which prints the server's answer
    /// as Argo's agent would take it for `outputs.result`).
    async fn run_http(
        &self,
        template: &Value,
        name: &str,
        inputs: &Params,
        node: String,
    ) -> (Phase, Option<String>) {
        let http = &template["http"];
        check_keys(
            http,
            "http",
            &[
                "method",
                "url",
                "headers",
                "body",
                "timeoutSeconds",
                "successCondition",
            ],
        );
        assert_eq!(http["method"], "POST", "{name}: method");
        assert_eq!(
            http["successCondition"], "response.statusCode == 200",
            "{name}: the stand-in reads the driver's answer by its status"
        );
        let scope = self.pod_scope(inputs, None, "");
        let url = scope.substitute(http["url"].as_str().expect("http.url"));
        let (server, run_id) = url
            .strip_suffix("/drive")
            .and_then(|rest| rest.split_once("/apis/v2beta1/runs/"))
            .unwrap_or_else(|| panic!("{name}: {url} is not a driver request"));
        let body = scope.substitute(http["body"].as_str().expect("http.body"));
        let body: Value = serde_json::from_str(&body).unwrap_or_else(|error| {
            panic!("{name}: the request body {body:?} is not JSON: {error}")
        });
        let task_path = body["task_path"].as_str().expect("body.task_path");
        let workflow = body["workflow"].as_str().expect("body.workflow");
        let wants_patch = body["pod_spec_patch"]
            .as_bool()
            .expect("body.pod_spec_patch is a boolean");
        let timeout = http["timeoutSeconds"].as_u64().unwrap_or(60).to_string();
        let mut command = tokio::process::Command::new(&self.cluster.kfpd);
        command
            .args(["driver", "--server", server, "--run-id", run_id])
            .args(["--task-path", task_path, "--workflow", workflow])
            .args(["--timeout-seconds", &timeout])
            .env("KFPD_LOG", "warn")
            .stdin(Stdio::null());
        if wants_patch {
            command.arg("--pod-spec-patch");
        }
        let started = Instant::now();
        let output = command.output().await.expect("run kfpd driver");
        let elapsed = started.elapsed();
        let (phase, message, result) = if output.status.success() {
            let result = String::from_utf8_lossy(&output.stdout).trim().to_string();
            (Phase::Succeeded, String::new(), Some(result))
        } else {
            let message = String::from_utf8_lossy(&output.stderr).trim().to_string();
            (Phase::Failed, message, None)
        };
        self.record(Node {
            name: node,
            template: name.to_string(),
            kind: Kind::Http,
            phase,
            message,
            attempts: 0,
            elapsed,
        });
        (phase, result)
    }

    /// A `resource` template against the in-memory stand-in for the Kubernetes API.
    async fn run_resource(
        &self,
        template: &Value,
        name: &str,
        inputs: &Params,
        node: String,
    ) -> Phase {
        let resource = &template["resource"];
        check_keys(resource, "resource", &["action", "manifest", "flags"]);
        let scope = self.pod_scope(inputs, None, "");
        let manifest = scope.substitute(resource["manifest"].as_str().expect("manifest"));
        let manifest: Value = serde_yaml::from_str(&manifest)
            .unwrap_or_else(|error| panic!("{name}: manifest is not YAML: {error}"));
        let kind = manifest["kind"].as_str().expect("manifest kind");
        let object_name = manifest["metadata"]["name"]
            .as_str()
            .expect("manifest metadata.name");
        let key = format!("{kind}/{object_name}");
        let flags: Vec<&str> = resource["flags"]
            .as_array()
            .map(|flags| flags.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let (phase, message) = {
            let mut objects = self.objects.lock().expect("objects");
            match resource["action"].as_str() {
                Some("create") if objects.contains(&key) => {
                    (Phase::Failed, format!("{key} already exists"))
                }
                Some("create") => {
                    objects.insert(key);
                    (Phase::Succeeded, String::new())
                }
                Some("delete") if objects.remove(&key) || flags.contains(&"--ignore-not-found") => {
                    (Phase::Succeeded, String::new())
                }
                Some("delete") => (Phase::Failed, format!("{key} not found")),
                other => {
                    panic!("{name}: the stand-in does not implement resource action {other:?}")
                }
            }
        };
        self.report_resource(&node, name, inputs, phase, &message)
            .await;
        self.record(Node {
            name: node,
            template: name.to_string(),
            kind: Kind::Resource,
            phase,
            message,
            attempts: 0,
            elapsed: Duration::ZERO,
        });
        phase
    }

    /// Reports the Workflow with the resource nodes ended so far (Argo shows a
    /// resource node as a `Pod` node), as the persistence agent reports each
    /// change of a Workflow; the server ends the tasks they run from it.
    async fn report_resource(
        &self,
        node: &str,
        template: &str,
        inputs: &Params,
        phase: Phase,
        message: &str,
    ) {
        let Some((server, run_id)) = &self.report_to else {
            return;
        };
        let parameters: Vec<Value> = inputs
            .iter()
            .map(|(name, value)| serde_json::json!({"name": name, "value": value}))
            .collect();
        let id = format!(
            "{}-{}",
            self.name,
            self.pod_counter.fetch_add(1, Ordering::SeqCst)
        );
        let nodes = {
            let mut reported = self.reported.lock().expect("reported");
            reported.insert(
                id.clone(),
                serde_json::json!({
                    "id": id,
                    "name": node,
                    "type": "Pod",
                    "templateName": template,
                    "phase": format!("{phase:?}"),
                    "message": message,
                    "inputs": {"parameters": parameters},
                }),
            );
            reported.clone()
        };
        let workflow = serde_json::json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Workflow",
            "metadata": {
                "name": self.name,
                "namespace": self.cluster.namespace,
                "uid": self.uid,
                "labels": {"pipeline/runid": run_id},
            },
            "spec": self.spec,
            "status": {"phase": "Running", "nodes": nodes},
        });
        let response = reqwest::Client::new()
            .post(format!("{server}/apis/v2beta1/workflows"))
            .json(&workflow)
            .send()
            .await
            .expect("report the workflow");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "the workflow report was refused: {status} {body}"
        );
    }

    fn pod_scope<'a>(
        &'a self,
        inputs: &'a Params,
        retries: Option<u32>,
        pod: &str,
    ) -> PodScope<'a> {
        PodScope {
            walk: self,
            inputs,
            retries,
            pod: pod.to_string(),
        }
    }

    /// A pod template: its init containers, then its main container, as many
    /// times as `retryStrategy` allows until one attempt succeeds.
    async fn run_pod(&self, template: &Value, name: &str, inputs: &Params, node: String) -> Phase {
        let limit = match &template["retryStrategy"] {
            Value::Null => 0,
            strategy => {
                check_keys(strategy, "retryStrategy", &["limit", "backoff"]);
                match &strategy["limit"] {
                    Value::Number(n) => n.as_u64().expect("retry limit"),
                    Value::String(s) => s.parse().expect("retry limit"),
                    other => panic!("{name}: retryStrategy.limit {other}"),
                }
            }
        };
        let deadline = template["activeDeadlineSeconds"].as_u64();
        let mut attempts = 0;
        let mut phase = Phase::Failed;
        let mut message = String::new();
        let mut elapsed = Duration::ZERO;
        for retry in 0..=limit {
            attempts += 1;
            let pod = format!(
                "{}-{name}-{}",
                self.name,
                self.pod_counter.fetch_add(1, Ordering::SeqCst)
            );
            let scope = self.pod_scope(inputs, Some(retry as u32), &pod);
            let started = Instant::now();
            let ran = self
                .run_containers(template, name, &scope, &pod, deadline)
                .await;
            elapsed += started.elapsed();
            match ran {
                Ok(()) => {
                    phase = Phase::Succeeded;
                    message.clear();
                    break;
                }
                Err(why) => message = why,
            }
        }
        self.record(Node {
            name: node,
            template: name.to_string(),
            kind: Kind::Pod,
            phase,
            message,
            attempts,
            elapsed,
        });
        phase
    }

    async fn run_containers(
        &self,
        template: &Value,
        name: &str,
        scope: &PodScope<'_>,
        pod: &str,
        deadline: Option<u64>,
    ) -> Result<(), String> {
        // Argo substitutes the whole template (volumes included) before the pod is made.
        let template = &scope.substitute_all(template);
        let root = self.cluster.dir.join("pods").join(pod);
        let volumes = self.volumes(template, name, &root)?;
        let patch = template["podSpecPatch"]
            .as_str()
            .map(|text| scope.substitute(text))
            .filter(|text| !text.trim().is_empty())
            .map(|text| {
                serde_json::from_str::<Value>(&text)
                    .unwrap_or_else(|error| panic!("{name}: podSpecPatch {text:?}: {error}"))
            });
        for init in template["initContainers"].as_array().into_iter().flatten() {
            self.run_init(init, name, &volumes);
        }
        let mut container = template["container"].clone();
        if let Some(patch) = &patch {
            apply_patch(&mut container, patch, name);
        }
        let limit = deadline.map(Duration::from_secs);
        self.run_main(&container, name, scope, &root, &volumes, limit)
            .await
    }

    /// Where each volume of the pod is on this machine.
    fn volumes(
        &self,
        template: &Value,
        name: &str,
        root: &Path,
    ) -> Result<HashMap<String, PathBuf>, String> {
        let mut found = HashMap::new();
        for claim in &self.claim_templates {
            found.insert(
                claim.clone(),
                self.cluster.dir.join("claims").join(&self.name).join(claim),
            );
        }
        for volume in template["volumes"].as_array().into_iter().flatten() {
            let volume_name = volume["name"].as_str().expect("volume name").to_string();
            let path = if volume.get("emptyDir").is_some() || volume.get("ephemeral").is_some() {
                root.join("volumes").join(&volume_name)
            } else if let Some(claim) = volume["persistentVolumeClaim"]["claimName"].as_str() {
                // A pod whose claim does not exist never starts.
                let key = format!("PersistentVolumeClaim/{claim}");
                if !self.objects.lock().expect("objects").contains(&key) {
                    return Err(format!("persistentvolumeclaim {claim:?} not found"));
                }
                self.cluster.dir.join("claims").join(claim)
            } else if let Some(secret) = volume["secret"]["secretName"].as_str() {
                let data = self.cluster.secrets.get(secret).unwrap_or_else(|| {
                    panic!("{name}: the pod mounts secret {secret:?}, which the cluster lacks")
                });
                write_files(&root.join("volumes").join(&volume_name), data)
            } else if let Some(map) = volume["configMap"]["name"].as_str() {
                let data = self.cluster.config_maps.get(map).unwrap_or_else(|| {
                    panic!("{name}: the pod mounts config map {map:?}, which the cluster lacks")
                });
                write_files(&root.join("volumes").join(&volume_name), data)
            } else {
                panic!("{name}: the stand-in does not implement volume {volume}");
            };
            std::fs::create_dir_all(&path).expect("volume dir");
            found.insert(volume_name, path);
        }
        Ok(found)
    }

    /// The init container: only kfpd's own, which copies the launcher into the pod.
    fn run_init(&self, init: &Value, name: &str, volumes: &HashMap<String, PathBuf>) {
        assert_eq!(
            init["image"].as_str(),
            Some(self.cluster.kfpd_image.as_str()),
            "{name}: the stand-in runs only kfpd's init container"
        );
        let command: Vec<&str> = init["command"]
            .as_array()
            .expect("init command")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let [kfpd, "launcher", "--copy", target] = command.as_slice() else {
            panic!("{name}: init container command {command:?}");
        };
        assert_eq!(*kfpd, "kfpd", "{name}: the image's kfpd is on its PATH");
        let target = host_path(target, init, volumes)
            .unwrap_or_else(|| panic!("{name}: {target} is not on a volume of the init container"));
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).expect("launcher dir");
        }
        if !target.exists() {
            std::os::unix::fs::symlink(&self.launcher, &target).expect("link the launcher");
        }
    }

    async fn run_main(
        &self,
        container: &Value,
        name: &str,
        scope: &PodScope<'_>,
        root: &Path,
        volumes: &HashMap<String, PathBuf>,
        limit: Option<Duration>,
    ) -> Result<(), String> {
        check_keys(
            container,
            "container",
            &[
                "name",
                "image",
                "imagePullPolicy",
                "command",
                "args",
                "env",
                "envFrom",
                "resources",
                "volumeMounts",
                "securityContext",
            ],
        );
        let image = container["image"].as_str().expect("image").to_string();
        let argv: Vec<String> = container["command"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(container["args"].as_array().into_iter().flatten())
            .map(|arg| scope.substitute(arg.as_str().expect("argument")))
            .collect();
        let program = host_path(&argv[0], container, volumes)
            .filter(|path| path.exists())
            .or_else(|| {
                (image == self.cluster.kfpd_image && argv[0] == "kfpd")
                    .then(|| self.launcher.clone())
            })
            .unwrap_or_else(|| panic!("{name}: {} is not in the pod", argv[0]));
        let mut env: Vec<(String, String)> = Vec::new();
        for from in container["envFrom"].as_array().into_iter().flatten() {
            let (source, optional, data) = if let Some(map) = from.get("configMapRef") {
                let found = self
                    .cluster
                    .config_maps
                    .get(map["name"].as_str().unwrap_or_default());
                (map, map["optional"] == Value::Bool(true), found)
            } else if let Some(secret) = from.get("secretRef") {
                let found = self
                    .cluster
                    .secrets
                    .get(secret["name"].as_str().unwrap_or_default());
                (secret, secret["optional"] == Value::Bool(true), found)
            } else {
                panic!("{name}: envFrom {from}");
            };
            match data {
                Some(data) => env.extend(data.iter().map(|(k, v)| (k.clone(), v.clone()))),
                None if optional => {}
                None => return Err(format!("envFrom {source} does not exist")),
            }
        }
        for variable in container["env"].as_array().into_iter().flatten() {
            let key = variable["name"].as_str().expect("env name").to_string();
            let value = if let Some(value) = variable["value"].as_str() {
                scope.substitute(value)
            } else if let Some(field) = variable["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                match field {
                    "metadata.name" => scope.pod.clone(),
                    "metadata.namespace" => self.cluster.namespace.clone(),
                    "metadata.uid" => uuid::Uuid::new_v4().to_string(),
                    other => other.to_string(),
                }
            } else if let Some(reference) = variable["valueFrom"].get("secretKeyRef") {
                match self.lookup(&self.cluster.secrets, reference) {
                    Some(value) => value,
                    None => continue,
                }
            } else if let Some(reference) = variable["valueFrom"].get("configMapKeyRef") {
                match self.lookup(&self.cluster.config_maps, reference) {
                    Some(value) => value,
                    None => continue,
                }
            } else {
                panic!("{name}: env {variable}");
            };
            // The workspace is a volume of the pod; here, its directory on this machine.
            let value = match key.as_str() {
                "KFPD_WORKSPACE" => host_path(&value, container, volumes)
                    .unwrap_or_else(|| panic!("{name}: {value} is not on a volume of the pod"))
                    .display()
                    .to_string(),
                _ => value,
            };
            env.retain(|(existing, _)| *existing != key);
            env.push((key, value));
        }
        // The image: a Python environment as the local engine makes one for it.
        let search_path = if image == self.cluster.kfpd_image {
            std::env::var_os("PATH").unwrap_or_default()
        } else {
            let key = self
                .cluster
                .image_environments
                .get(&image)
                .unwrap_or(&image);
            let environment = self
                .cluster
                .images
                .environment(key)
                .await
                .map_err(|error| format!("image {image}: {error}"))?;
            env.push(("VIRTUAL_ENV".into(), environment.root.display().to_string()));
            environment
                .search_path(std::env::var_os("PATH").as_deref())
                .expect("PATH")
        };
        // The pod's own /tmp.
        let tmp = root.join("tmp");
        std::fs::create_dir_all(&tmp).expect("pod tmp");
        let log_path = root.join("pod.log");
        let log = std::fs::File::create(&log_path).expect("pod log");
        let mut command = tokio::process::Command::new(&program);
        command
            .args(&argv[1..])
            .env_clear()
            .env("PATH", search_path)
            .env("HOME", std::env::var_os("HOME").unwrap_or_default())
            .env("TMPDIR", &tmp)
            .env("KFPD_WORK_DIR", tmp.join("kfpd"))
            .env("KFPD_LOG", "warn")
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
            .envs(env)
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("{name}: start {}: {error}", program.display()));
        let status = match limit {
            Some(limit) => match tokio::time::timeout(limit, child.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    let _ = child.kill().await;
                    return Err("pod deadline exceeded".to_string());
                }
            },
            None => child.wait().await,
        }
        .expect("wait for the pod");
        if status.success() {
            return Ok(());
        }
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Err(format!("{status}: {}", tail.join(" | ")))
    }

    fn lookup(
        &self,
        objects: &BTreeMap<String, BTreeMap<String, String>>,
        reference: &Value,
    ) -> Option<String> {
        let optional = reference["optional"] == Value::Bool(true);
        let object = reference["name"].as_str().unwrap_or_default();
        let key = reference["key"].as_str().unwrap_or_default();
        let found = objects.get(object).and_then(|data| data.get(key)).cloned();
        if found.is_none() && !optional {
            panic!("the pod needs {object}/{key}, which the cluster lacks");
        }
        found
    }
}

/// The tasks of one expansion and how those that ended did.
struct Group {
    expanded: usize,
    ended: Vec<(Phase, Option<String>)>,
    /// Expanded over items (Argo shows a task group node).
    is_group: bool,
}

impl Group {
    fn phase(&self) -> Phase {
        if let Some((phase, _)) = self.ended.iter().find(|(phase, _)| phase.failed()) {
            return *phase;
        }
        if !self.is_group {
            return self
                .ended
                .first()
                .map(|(phase, _)| *phase)
                .unwrap_or(Phase::Skipped);
        }
        if self.ended.iter().all(|(phase, _)| *phase == Phase::Skipped) {
            return Phase::Skipped;
        }
        Phase::Succeeded
    }
}

/// A DAG's phase once its tasks ended, as Argo decides it: from its target tasks
/// (`target`, else the tasks nothing depends on); a task that did not complete
/// (skipped, omitted) takes the phase of the branch it is on.
fn dag_phase(
    dag: &Value,
    tasks: &[Task],
    done: &HashMap<String, (Phase, Option<String>)>,
) -> Phase {
    let targets: Vec<String> = match dag["target"].as_str() {
        Some(target) => target.split_whitespace().map(str::to_string).collect(),
        None => {
            let depended: BTreeSet<&str> = tasks
                .iter()
                .flat_map(|task| task.dependencies.iter().map(String::as_str))
                .collect();
            tasks
                .iter()
                .filter(|task| !depended.contains(task.name.as_str()))
                .map(|task| task.name.clone())
                .collect()
        }
    };
    fn branch(
        name: &str,
        tasks: &[Task],
        done: &HashMap<String, (Phase, Option<String>)>,
    ) -> Phase {
        if let Some((phase, _)) = done.get(name) {
            if phase.completed() {
                return *phase;
            }
        }
        let task = tasks.iter().find(|task| task.name == name).expect("task");
        task.dependencies
            .iter()
            .map(|dependency| branch(dependency, tasks, done))
            .find(|phase| phase.failed())
            .unwrap_or(Phase::Succeeded)
    }
    targets
        .iter()
        .map(|target| branch(target, tasks, done))
        .find(|phase| phase.failed())
        .unwrap_or(Phase::Succeeded)
}

/// One task of a DAG template.
struct Task {
    name: String,
    template: String,
    arguments: Vec<(String, String)>,
    depends: Option<String>,
    dependencies: BTreeSet<String>,
    when: Option<String>,
    with_sequence: Option<String>,
    with_items: Option<Vec<Value>>,
    with_param: Option<String>,
}

impl Task {
    fn parse(task: &Value) -> Task {
        let name = task["name"].as_str().expect("task name").to_string();
        check_keys(
            task,
            &format!("task {name}"),
            &[
                "name",
                "template",
                "arguments",
                "depends",
                "when",
                "withSequence",
                "withItems",
                "withParam",
            ],
        );
        if let Some(arguments) = task.get("arguments") {
            check_keys(arguments, "arguments", &["parameters"]);
        }
        let arguments = task["arguments"]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|parameter| {
                let value = match &parameter["value"] {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                (
                    parameter["name"]
                        .as_str()
                        .expect("argument name")
                        .to_string(),
                    value,
                )
            })
            .collect();
        let depends = task["depends"].as_str().map(str::to_string);
        let dependencies = depends.as_deref().map(depends_names).unwrap_or_default();
        let with_sequence = match &task["withSequence"] {
            Value::Null => None,
            sequence => {
                check_keys(sequence, "withSequence", &["count"]);
                Some(match &sequence["count"] {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                })
            }
        };
        Task {
            template: task["template"]
                .as_str()
                .expect("task template")
                .to_string(),
            name,
            arguments,
            depends,
            dependencies,
            when: task["when"].as_str().map(str::to_string),
            with_sequence,
            with_items: task["withItems"].as_array().cloned(),
            with_param: task["withParam"].as_str().map(str::to_string),
        }
    }

    /// The items the task expands over (`{{item}}`), or `None` when it does not.
    fn items(&self, scope: &Scope<'_>) -> Option<Vec<String>> {
        if let Some(count) = &self.with_sequence {
            let count = scope.substitute(count);
            let count: usize = count
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("task {}: withSequence count {count:?}", self.name));
            return Some((0..count).map(|index| index.to_string()).collect());
        }
        let list = if let Some(items) = &self.with_items {
            items.clone()
        } else if let Some(param) = &self.with_param {
            let text = scope.substitute(param);
            serde_json::from_str::<Vec<Value>>(&text)
                .unwrap_or_else(|_| panic!("task {}: withParam {text:?} is not a list", self.name))
        } else {
            return None;
        };
        Some(
            list.into_iter()
                .map(|item| match item {
                    Value::String(text) => text,
                    other => other.to_string(),
                })
                .collect(),
        )
    }
}

/// The inputs a template runs with: its arguments, else its defaults.
fn template_inputs(template: &Value, name: &str, mut arguments: Params) -> Params {
    let mut inputs = Params::new();
    for parameter in template["inputs"]["parameters"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let input = parameter["name"].as_str().expect("input name");
        let value = arguments
            .remove(input)
            .or_else(|| parameter["default"].as_str().map(str::to_string));
        let value = value.unwrap_or_else(|| {
            panic!("template {name:?}: input {input:?} has neither an argument nor a default")
        });
        inputs.insert(input.to_string(), value);
    }
    assert!(
        arguments.is_empty(),
        "template {name:?} takes no inputs {:?}",
        arguments.keys().collect::<Vec<_>>()
    );
    inputs
}

/// What a DAG task's fields see.
struct Scope<'a> {
    walk: &'a Walk,
    inputs: &'a Params,
    done: &'a HashMap<String, (Phase, Option<String>)>,
    item: Option<String>,
}

impl Scope<'_> {
    fn substitute(&self, text: &str) -> String {
        substitute(text, &|name| {
            if let Some(input) = name.strip_prefix("inputs.parameters.") {
                return self.inputs.get(input).cloned();
            }
            if name == "item" {
                return self.item.clone();
            }
            if let Some(rest) = name.strip_prefix("tasks.") {
                let (task, field) = rest.split_once('.')?;
                let (_, result) = self.done.get(task)?;
                return match field {
                    "outputs.result" => result.clone(),
                    _ => None,
                };
            }
            self.walk.workflow_variable(name)
        })
    }
}

/// What a pod template's fields see.
struct PodScope<'a> {
    walk: &'a Walk,
    inputs: &'a Params,
    retries: Option<u32>,
    pod: String,
}

impl PodScope<'_> {
    /// Every string of `value`, substituted.
    fn substitute_all(&self, value: &Value) -> Value {
        match value {
            Value::String(text) => Value::String(self.substitute(text)),
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.substitute_all(v)).collect())
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(key, v)| (key.clone(), self.substitute_all(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    fn substitute(&self, text: &str) -> String {
        substitute(text, &|name| {
            if let Some(input) = name.strip_prefix("inputs.parameters.") {
                return self.inputs.get(input).cloned();
            }
            match name {
                "retries" => self.retries.map(|n| n.to_string()),
                "pod.name" => Some(self.pod.clone()),
                _ => self.walk.workflow_variable(name),
            }
        })
    }
}

impl Walk {
    fn workflow_variable(&self, name: &str) -> Option<String> {
        match name {
            "workflow.name" => Some(self.name.clone()),
            "workflow.uid" => Some(self.uid.clone()),
            "workflow.namespace" => Some(self.cluster.namespace.clone()),
            _ => None,
        }
    }
}

/// Replaces every `{{name}}` and `{{=expression}}` of `text`; an unknown
/// variable is a failure of the Workflow, as Argo reports it.
fn substitute(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .unwrap_or_else(|| panic!("unclosed {{{{ in {text:?}"));
        let inner = after[..end].trim();
        let value = match inner.strip_prefix('=') {
            Some(expression) => evaluate_expression(expression.trim(), lookup),
            None => lookup(inner),
        };
        let value = value
            .unwrap_or_else(|| panic!("variable {{{{{inner}}}}} does not resolve in {text:?}"));
        out.push_str(&value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// The one expression form the compiler writes:
/// `jsonpath(tasks['X'].outputs.result, '$.field')`.
fn evaluate_expression(
    expression: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    let inner = expression
        .strip_prefix("jsonpath(tasks['")
        .and_then(|rest| rest.strip_suffix("')"))
        .unwrap_or_else(|| panic!("the stand-in does not evaluate {expression:?}"));
    let (task, rest) = inner
        .split_once("'].outputs.result, '$.")
        .unwrap_or_else(|| panic!("the stand-in does not evaluate {expression:?}"));
    let result = lookup(&format!("tasks.{task}.outputs.result"))?;
    let parsed: Value = serde_json::from_str(&result)
        .unwrap_or_else(|error| panic!("outputs.result of {task} is not JSON ({error}): {result}"));
    Some(match &parsed[rest] {
        Value::String(text) => text.clone(),
        Value::Null => panic!("outputs.result of {task} has no {rest:?}: {result}"),
        other => other.to_string(),
    })
}

/// A `when` after substitution: `a == b` or `a != b` (Argo's govaluate, for the
/// forms the compiler writes).
fn evaluate_when(condition: &str) -> bool {
    if let Some((left, right)) = condition.split_once("!=") {
        return left.trim() != right.trim();
    }
    if let Some((left, right)) = condition.split_once("==") {
        return left.trim() == right.trim();
    }
    panic!("the stand-in does not evaluate the condition {condition:?}");
}

/// The task names a `depends` expression mentions.
fn depends_names(expression: &str) -> BTreeSet<String> {
    tokens(expression)
        .into_iter()
        .filter(|token| !matches!(token.as_str(), "&&" | "||" | "!" | "(" | ")"))
        .map(|token| split_result(&token).0.to_string())
        .collect()
}

const RESULTS: [&str; 7] = [
    "Succeeded",
    "Failed",
    "Errored",
    "Skipped",
    "Omitted",
    "Daemoned",
    "AnySucceeded",
];

/// `A.Succeeded` → (`A`, `Some("Succeeded")`); `A` → (`A`, `None`).
fn split_result(token: &str) -> (&str, Option<&str>) {
    match token.rsplit_once('.') {
        Some((task, result)) if RESULTS.contains(&result) || result == "AllFailed" => {
            (task, Some(result))
        }
        _ => (token, None),
    }
}

fn tokens(expression: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut chars = expression.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '(' || c == ')' || c == '!' {
            tokens.push(c.to_string());
            chars.next();
        } else if c == '&' || c == '|' {
            chars.next();
            assert_eq!(chars.next(), Some(c), "bad operator in {expression:?}");
            tokens.push(format!("{c}{c}"));
        } else {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    word.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            assert!(!word.is_empty(), "bad character {c:?} in {expression:?}");
            tokens.push(word);
        }
    }
    tokens
}

/// Evaluates a `depends` expression once every task it names ended.
fn evaluate_depends(expression: &str, phases: &HashMap<&str, Phase>) -> bool {
    let tokens = tokens(expression);
    let mut position = 0;
    let value = parse_or(&tokens, &mut position, phases);
    assert_eq!(position, tokens.len(), "trailing tokens in {expression:?}");
    value
}

fn parse_or(tokens: &[String], at: &mut usize, phases: &HashMap<&str, Phase>) -> bool {
    let mut value = parse_and(tokens, at, phases);
    while tokens.get(*at).map(String::as_str) == Some("||") {
        *at += 1;
        value |= parse_and(tokens, at, phases);
    }
    value
}

fn parse_and(tokens: &[String], at: &mut usize, phases: &HashMap<&str, Phase>) -> bool {
    let mut value = parse_unary(tokens, at, phases);
    while tokens.get(*at).map(String::as_str) == Some("&&") {
        *at += 1;
        value &= parse_unary(tokens, at, phases);
    }
    value
}

fn parse_unary(tokens: &[String], at: &mut usize, phases: &HashMap<&str, Phase>) -> bool {
    let token = tokens.get(*at).expect("depends ends early").clone();
    *at += 1;
    match token.as_str() {
        "!" => !parse_unary(tokens, at, phases),
        "(" => {
            let value = parse_or(tokens, at, phases);
            assert_eq!(
                tokens.get(*at).map(String::as_str),
                Some(")"),
                "unbalanced depends"
            );
            *at += 1;
            value
        }
        word => {
            let (task, result) = split_result(word);
            let phase = *phases
                .get(task)
                .unwrap_or_else(|| panic!("depends names {task:?} before it ended"));
            match result {
                None => matches!(phase, Phase::Succeeded | Phase::Skipped),
                Some("Succeeded") => phase == Phase::Succeeded,
                Some("Failed") => phase == Phase::Failed,
                Some("Errored") => phase == Phase::Error,
                Some("Skipped") => phase == Phase::Skipped,
                Some("Omitted") => phase == Phase::Omitted,
                Some("Daemoned") => false,
                Some(other) => panic!("the stand-in does not evaluate {task}.{other}"),
            }
        }
    }
}

/// The container after a strategic-merge pod spec patch, for what a process
/// can show: the main container's image, env and resources.
fn apply_patch(container: &mut Value, patch: &Value, name: &str) {
    let patched = patch["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == container["name"]);
    let Some(patched) = patched else {
        return;
    };
    if let Some(image) = patched.get("image") {
        container["image"] = image.clone();
    }
    if let Some(resources) = patched.get("resources") {
        container["resources"] = resources.clone();
    }
    for variable in patched["env"].as_array().into_iter().flatten() {
        let env = container
            .as_object_mut()
            .expect("container")
            .entry("env")
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()
            .unwrap_or_else(|| panic!("{name}: env is a list"));
        env.retain(|existing| existing["name"] != variable["name"]);
        env.push(variable.clone());
    }
}

/// The host path of `path` inside the container, through its volume mounts.
fn host_path(path: &str, container: &Value, volumes: &HashMap<String, PathBuf>) -> Option<PathBuf> {
    container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|mount| {
            let mount_path = mount["mountPath"].as_str()?;
            let rest = path.strip_prefix(mount_path)?;
            if !(rest.is_empty() || rest.starts_with('/')) {
                return None;
            }
            let volume = volumes.get(mount["name"].as_str()?)?;
            let base = match mount["subPath"].as_str() {
                Some(sub) => volume.join(sub),
                None => volume.clone(),
            };
            Some(base.join(rest.trim_start_matches('/')))
        })
}

fn write_files(dir: &Path, data: &BTreeMap<String, String>) -> PathBuf {
    std::fs::create_dir_all(dir).expect("volume dir");
    for (key, value) in data {
        std::fs::write(dir.join(key), value).expect("volume file");
    }
    dir.to_path_buf()
}

/// Refuses fields the stand-in does not implement.
fn check_keys(value: &Value, what: &str, known: &[&str]) {
    let Some(object) = value.as_object() else {
        panic!("{what} is not an object: {value}");
    };
    let unknown: Vec<&String> = object
        .keys()
        .filter(|key| !known.contains(&key.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "the stand-in for Argo does not implement {what}: {unknown:?}"
    );
}
