//! IR → Workflow: one DAG template per DAG component, one pod template per
//! distinct container task, one `http` template for every driver request.
//!
//! Layout and the contract with `kfpd driver` / `kfpd launcher` are in
//! docs/argo.md; the names used here (`scope`, `task-path`, `kfpd-driver`,
//! `execute`, `iteration_count`, `pod_spec_patch`) are that contract.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kfpd_ir::spec::{
    ComponentSpec, DagSpec, ExecutorKind, Implementation, PipelineContainerSpec, PipelineSpec,
    PipelineTaskSpec, RetryPolicy, TriggerStrategy,
};
use kfpd_ir::Package;
use serde_json::Value;

use crate::error::Error;
use crate::options::Options;
use crate::platform::{self, ExecutorConfig, PodSettings};
use crate::resources;
use crate::scope::{placeholder_image, Bound, Scope, CREATE_PVC_IMAGE, DELETE_PVC_IMAGE};
use crate::workflow::*;

/// Name of the entrypoint template, the root DAG.
pub const ROOT_TEMPLATE: &str = "root";
/// The driver request template.
pub const DRIVER_TEMPLATE: &str = "kfpd-driver";
/// The pod of an importer that downloads into the workspace.
pub const IMPORTER_TEMPLATE: &str = "kfpd-importer";
/// Suffix of a task's driver node.
pub const DRIVER_SUFFIX: &str = "-driver";
/// Input of every DAG template: the task path of the DAG instance.
pub const SCOPE_INPUT: &str = "scope";
/// Input of the driver and pod templates: the task's path.
pub const TASK_PATH_INPUT: &str = "task-path";
/// Input of a pod template whose settings are decided at run time.
pub const PATCH_INPUT: &str = "pod-spec-patch";
/// Input of the driver template: whether to answer a pod spec patch.
pub const WANT_PATCH_INPUT: &str = "patch";
/// Input of a parallelism-limited loop template: the item count.
pub const COUNT_INPUT: &str = "count";
/// Where the launcher binary is copied in a task pod.
pub const LAUNCHER_DIR: &str = "/kfpd";
/// Volume holding the launcher binary.
pub const LAUNCHER_VOLUME: &str = "kfpd-bin";
/// The workspace volume claim template (`pipelineConfig.workspace`).
pub const WORKSPACE_VOLUME: &str = "kfp-workspace";
/// Where the workspace is mounted.
pub const WORKSPACE_PATH: &str = "/kfp-workspace";

/// The projected service-account token volume of multi-user mode.
pub const TOKEN_VOLUME: &str = "kfpd-sa-token";
/// Where it is mounted; the token file is `token` inside, as upstream's SDK
/// default `/var/run/secrets/kubeflow/pipelines/token`.
pub const TOKEN_DIR: &str = "/var/run/secrets/kubeflow/pipelines";
/// The variable naming the token file, which `kfpd driver`, `kfpd launcher` and
/// upstream's SDK read.
pub const TOKEN_ENV: &str = "KF_PIPELINES_SA_TOKEN_PATH";
/// The token's audience, the one the API server's TokenReview asks for.
pub const TOKEN_AUDIENCE: &str = "pipelines.kubeflow.org";
/// How long a projected token lives; the kubelet replaces it at 80 % of that.
pub const TOKEN_EXPIRATION_SECONDS: i64 = 7200;

/// Label and annotation every pod carries, as upstream's.
const V2_COMPONENT: &str = "pipelines.kubeflow.org/v2_component";

/// Compiles a validated pipeline for one run.
pub fn compile(package: &Package, options: &Options) -> Result<Workflow, Error> {
    let spec = package.spec();
    let kubernetes = package.platform().and_then(|p| p.kubernetes());
    let root_dag = spec
        .root
        .dag
        .as_ref()
        .ok_or_else(|| Error::Spec("the root component has no DAG".into()))?;
    let mut compiler = Compiler {
        spec,
        executors: kubernetes.map(|k| &k.deployment_spec.executors),
        options,
        workspace: kubernetes
            .and_then(|k| k.pipeline_config.as_ref())
            .and_then(|c| c.workspace.as_ref())
            .is_some(),
        templates: Vec::new(),
        by_content: HashMap::new(),
        names: BTreeSet::new(),
        uses_driver: false,
        uses_importer_pod: false,
    };
    let scope = Scope::root(spec, &options.parameters);
    compiler.names.insert(ROOT_TEMPLATE.to_string());
    let root = compiler.dag_template(ROOT_TEMPLATE, root_dag, &scope, None)?;
    let mut templates = vec![root];
    if compiler.uses_driver {
        templates.push(compiler.driver_template());
    }
    if compiler.uses_importer_pod {
        templates.push(compiler.importer_template());
    }
    templates.append(&mut compiler.templates);
    Ok(compiler.workflow(package, kubernetes, templates))
}

struct Compiler<'a> {
    spec: &'a PipelineSpec,
    executors: Option<&'a BTreeMap<String, serde_json::Map<String, Value>>>,
    options: &'a Options,
    workspace: bool,
    /// Templates other than the root, in the order they were first made.
    templates: Vec<Template>,
    /// Template content (without its name) → its name, to share identical ones.
    by_content: HashMap<String, String>,
    names: BTreeSet<String>,
    uses_driver: bool,
    uses_importer_pod: bool,
}

/// What a task of a DAG becomes.
enum TaskKind<'a> {
    Container(&'a PipelineContainerSpec, &'a str),
    Importer { download_to_workspace: bool },
    CreatePvc,
    DeletePvc,
    Dag(&'a DagSpec),
    Loop(&'a DagSpec, Option<&'a str>),
}

fn driver_name(task: &str) -> String {
    format!("{task}{DRIVER_SUFFIX}")
}

/// `{{=jsonpath(tasks['X-driver'].outputs.result, '$.field')}}`.
fn driver_field(task: &str, field: &str) -> String {
    format!(
        "{{{{=jsonpath(tasks['{}'].outputs.result, '$.{field}')}}}}",
        driver_name(task)
    )
}

fn task_path(task: &str) -> String {
    format!("{{{{inputs.parameters.{SCOPE_INPUT}}}}}/{task}")
}

impl<'a> Compiler<'a> {
    fn kind(&self, name: &str, task: &'a PipelineTaskSpec) -> Result<TaskKind<'a>, Error> {
        let component = self.component(name, task)?;
        match component.implementation() {
            Some(Implementation::Dag(dag)) => {
                if task.parameter_iterator.is_some() || task.artifact_iterator.is_some() {
                    let item = task
                        .parameter_iterator
                        .as_ref()
                        .map(|i| i.item_input.as_str());
                    Ok(TaskKind::Loop(dag, item))
                } else {
                    Ok(TaskKind::Dag(dag))
                }
            }
            Some(Implementation::Executor(label)) => {
                let executor = self.spec.executor(label).ok_or_else(|| {
                    Error::Spec(format!("task {name:?}: executor {label:?} does not exist"))
                })?;
                match executor.kind() {
                    Some(ExecutorKind::Container(container)) => {
                        match placeholder_image(self.spec, component) {
                            Some(CREATE_PVC_IMAGE) => Ok(TaskKind::CreatePvc),
                            Some(DELETE_PVC_IMAGE) => Ok(TaskKind::DeletePvc),
                            _ => Ok(TaskKind::Container(container, label)),
                        }
                    }
                    Some(ExecutorKind::Importer(importer)) => {
                        if task.condition().is_some() {
                            return Err(Error::Unsupported(format!(
                                "task {name:?} is an importer with a condition"
                            )));
                        }
                        Ok(TaskKind::Importer {
                            download_to_workspace: importer.download_to_workspace,
                        })
                    }
                    Some(ExecutorKind::Resolver(_)) => Err(Error::Unsupported(format!(
                        "task {name:?} uses a resolver executor"
                    ))),
                    Some(ExecutorKind::CustomJob(_)) => Err(Error::Unsupported(format!(
                        "task {name:?} uses a custom job executor (Vertex AI only)"
                    ))),
                    None => Err(Error::Spec(format!(
                        "executor {label:?} has no container or importer"
                    ))),
                }
            }
            None => Err(Error::Spec(format!(
                "component {:?} has neither a DAG nor an executor",
                task.component_ref.name
            ))),
        }
    }

    fn component(&self, name: &str, task: &PipelineTaskSpec) -> Result<&'a ComponentSpec, Error> {
        self.spec
            .component(&task.component_ref.name)
            .ok_or_else(|| {
                Error::Spec(format!(
                    "task {name:?}: component {:?} does not exist",
                    task.component_ref.name
                ))
            })
    }

    /// The DAG template of one DAG component in one scope.
    fn dag_template(
        &mut self,
        name: &str,
        dag: &'a DagSpec,
        scope: &Scope<'a>,
        retry: Option<&'a RetryPolicy>,
    ) -> Result<Template, Error> {
        let mut tasks = Vec::new();
        let mut completes_anyway = false;
        for (task_name, task) in &dag.tasks {
            if dag.tasks.contains_key(&driver_name(task_name)) {
                return Err(Error::Unsupported(format!(
                    "tasks {task_name:?} and {:?} are in the same DAG; a task name may not be \
                     another's followed by {DRIVER_SUFFIX:?}",
                    driver_name(task_name)
                )));
            }
            let strategy = task.trigger_strategy();
            completes_anyway |= strategy == TriggerStrategy::AllUpstreamTasksCompleted;
            let depends = depends(task, strategy);
            let retry = task.retry_policy.as_ref().or(retry);
            let kind = self.kind(task_name, task)?;
            self.uses_driver = true;
            match kind {
                TaskKind::Importer {
                    download_to_workspace: false,
                } => {
                    // The server does the whole import when it is driven.
                    tasks.push(driver_task(task_name, task_name, depends, false));
                }
                kind => {
                    let (main, wants_patch) =
                        self.main_task(task_name, task, kind, scope, retry)?;
                    tasks.push(driver_task(
                        task_name,
                        &driver_name(task_name),
                        depends,
                        wants_patch,
                    ));
                    tasks.push(main);
                }
            }
        }
        let mut template = Template {
            name: name.to_string(),
            inputs: Inputs {
                parameters: vec![if name == ROOT_TEMPLATE {
                    Parameter::input_or(SCOPE_INPUT, "root")
                } else {
                    Parameter::input(SCOPE_INPUT)
                }],
            },
            dag: Some(DagTemplate {
                tasks,
                target: None,
                fail_fast: None,
            }),
            ..Template::default()
        };
        if completes_anyway {
            // A task that runs after its upstream failed must not hide that failure:
            // every task decides the DAG's outcome, and a failure does not stop the
            // DAG from reaching the tasks that run anyway.
            let mut names: Vec<&str> = dag.tasks.keys().map(String::as_str).collect();
            names.sort_unstable();
            if let Some(dag) = template.dag.as_mut() {
                dag.target = Some(names.join(" "));
                dag.fail_fast = Some(false);
            }
        }
        Ok(template)
    }

    /// The node that does a task's work after its driver request.
    fn main_task(
        &mut self,
        name: &str,
        task: &'a PipelineTaskSpec,
        kind: TaskKind<'a>,
        scope: &Scope<'a>,
        retry: Option<&'a RetryPolicy>,
    ) -> Result<(DagTask, bool), Error> {
        let mut node = DagTask {
            name: name.to_string(),
            depends: Some(format!("{}.Succeeded", driver_name(name))),
            when: Some(format!("{} == true", driver_field(name, "execute"))),
            ..DagTask::default()
        };
        let mut wants_patch = false;
        match kind {
            TaskKind::Container(container, label) => {
                let component = self.component(name, task)?;
                let template =
                    self.pod_template(name, task, component, container, label, scope, retry)?;
                wants_patch = template
                    .inputs
                    .parameters
                    .iter()
                    .any(|p| p.name == PATCH_INPUT);
                node.template = self.share(template);
                node.arguments
                    .parameters
                    .push(Parameter::argument(TASK_PATH_INPUT, task_path(name)));
                if wants_patch {
                    node.arguments.parameters.push(Parameter::argument(
                        PATCH_INPUT,
                        driver_field(name, "pod_spec_patch"),
                    ));
                }
            }
            TaskKind::Importer { .. } => {
                self.uses_importer_pod = true;
                node.template = IMPORTER_TEMPLATE.to_string();
                node.arguments
                    .parameters
                    .push(Parameter::argument(TASK_PATH_INPUT, task_path(name)));
            }
            TaskKind::CreatePvc | TaskKind::DeletePvc => {
                let component = self.component(name, task)?;
                let mut template = if matches!(kind, TaskKind::CreatePvc) {
                    self.create_pvc_template(name, task, component, scope)?
                } else {
                    self.delete_pvc_template(name, task, component, scope)?
                };
                // Unused by the manifest: it names the task in the node's status, from
                // which the server ends the task (the persistence agent's report).
                template.inputs = Inputs {
                    parameters: vec![Parameter::input(TASK_PATH_INPUT)],
                };
                node.template = self.share(template);
                node.arguments
                    .parameters
                    .push(Parameter::argument(TASK_PATH_INPUT, task_path(name)));
            }
            TaskKind::Dag(dag) => {
                let component = self.component(name, task)?;
                let child = scope.child(task, component, None);
                let template = self.dag_template(&task.component_ref.name, dag, &child, retry)?;
                node.template = self.share(template);
                node.arguments
                    .parameters
                    .push(Parameter::argument(SCOPE_INPUT, task_path(name)));
            }
            TaskKind::Loop(dag, item) => {
                let component = self.component(name, task)?;
                let child = scope.child(task, component, item);
                let body = self.dag_template(&task.component_ref.name, dag, &child, retry)?;
                let body = self.share(body);
                let count = driver_field(name, "iteration_count");
                let limit = task
                    .iterator_policy
                    .as_ref()
                    .map(|p| p.parallelism_limit)
                    .unwrap_or(0);
                if limit > 0 {
                    let iterator = self.iterator_template(&body, limit);
                    node.template = self.share(iterator);
                    node.arguments
                        .parameters
                        .push(Parameter::argument(SCOPE_INPUT, task_path(name)));
                    node.arguments
                        .parameters
                        .push(Parameter::argument(COUNT_INPUT, count));
                } else {
                    node.template = body;
                    node.with_sequence = Some(Sequence { count });
                    node.arguments.parameters.push(Parameter::argument(
                        SCOPE_INPUT,
                        format!("{}/{{{{item}}}}", task_path(name)),
                    ));
                }
            }
        }
        Ok((node, wants_patch))
    }

    /// Adds a template unless an identical one exists; returns the name to use.
    fn share(&mut self, mut template: Template) -> String {
        let base = std::mem::take(&mut template.name);
        let content = serde_json::to_string(&template).unwrap_or_default();
        if let Some(existing) = self.by_content.get(&content) {
            return existing.clone();
        }
        let mut name = base.clone();
        let mut n = 2;
        while self.names.contains(&name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        self.names.insert(name.clone());
        self.by_content.insert(content, name.clone());
        template.name = name.clone();
        self.templates.push(template);
        name
    }

    /// A loop with a parallelism limit: a DAG whose one task expands the items.
    fn iterator_template(&self, body: &str, limit: i32) -> Template {
        Template {
            name: format!("{body}-parallel-{limit}"),
            inputs: Inputs {
                parameters: vec![Parameter::input(SCOPE_INPUT), Parameter::input(COUNT_INPUT)],
            },
            parallelism: Some(i64::from(limit)),
            dag: Some(DagTemplate {
                tasks: vec![DagTask {
                    name: "iteration".into(),
                    template: body.to_string(),
                    arguments: Arguments {
                        parameters: vec![Parameter::argument(
                            SCOPE_INPUT,
                            format!("{{{{inputs.parameters.{SCOPE_INPUT}}}}}/{{{{item}}}}"),
                        )],
                    },
                    with_sequence: Some(Sequence {
                        count: format!("{{{{inputs.parameters.{COUNT_INPUT}}}}}"),
                    }),
                    ..DagTask::default()
                }],
                target: None,
                fail_fast: None,
            }),
            ..Template::default()
        }
    }

    fn platform_config(&self, label: &str) -> Result<ExecutorConfig, Error> {
        match self.executors.and_then(|e| e.get(label)) {
            Some(raw) => ExecutorConfig::parse(label, raw),
            None => Ok(ExecutorConfig::default()),
        }
    }

    /// The pod of a container task.
    #[allow(clippy::too_many_arguments)]
    fn pod_template(
        &mut self,
        name: &str,
        task: &'a PipelineTaskSpec,
        component: &'a ComponentSpec,
        container: &'a PipelineContainerSpec,
        label: &str,
        scope: &Scope<'a>,
        retry: Option<&'a RetryPolicy>,
    ) -> Result<Template, Error> {
        let config = self.platform_config(label)?;
        let settings = platform::settings(&config, scope)
            .map_err(|e| Error::Platform(format!("task {name:?}: {e}")))?;
        let resolved = resources::resolve(container, task, component, scope)
            .map_err(|e| Error::Spec(format!("task {name:?}: {e}")))?;
        let needs_patch = settings.needs_patch || resolved.needs_patch;

        let mut env = vec![
            EnvVar::field("KFPD_POD_NAME", "metadata.name"),
            EnvVar::field("KFPD_POD_UID", "metadata.uid"),
            EnvVar::field("KFPD_NAMESPACE", "metadata.namespace"),
        ];
        if retry.is_some_and(|r| r.max_retry_count > 0) {
            env.push(EnvVar::value("KFPD_RETRY_INDEX", "{{retries}}"));
        }
        if self.workspace {
            // `{{$.workspace_path}}` of every task: the run's shared volume.
            env.push(EnvVar::value("KFPD_WORKSPACE", WORKSPACE_PATH));
        }
        // A value holding `{{` would be taken for an Argo variable; the launcher
        // sets the component's variables itself anyway.
        env.extend(
            container
                .env
                .iter()
                .filter(|e| !e.value.contains("{{"))
                .map(|e| EnvVar::value(&e.name, e.value.clone())),
        );
        env.extend(settings.env.iter().cloned());
        env.extend(self.token_env());

        let mut mounts = vec![VolumeMount {
            name: LAUNCHER_VOLUME.into(),
            mount_path: LAUNCHER_DIR.into(),
            sub_path: None,
        }];
        mounts.extend(self.token_mount());
        if self.workspace {
            mounts.push(VolumeMount {
                name: WORKSPACE_VOLUME.into(),
                mount_path: WORKSPACE_PATH.into(),
                sub_path: None,
            });
        }
        mounts.extend(settings.mounts.iter().cloned());
        let mut volumes = vec![Volume {
            name: LAUNCHER_VOLUME.into(),
            empty_dir: Some(EmptyDir::default()),
            ..Volume::default()
        }];
        volumes.extend(self.token_volume());
        volumes.extend(settings.volumes.iter().cloned());

        let mut inputs = vec![Parameter::input(TASK_PATH_INPUT)];
        let pod_spec_patch = if needs_patch {
            inputs.push(Parameter::input_or(PATCH_INPUT, ""));
            Some(format!("{{{{inputs.parameters.{PATCH_INPUT}}}}}"))
        } else {
            static_patch(&settings)
        };

        Ok(Template {
            name: label.to_string(),
            inputs: Inputs { parameters: inputs },
            metadata: settings.metadata.clone(),
            init_containers: std::iter::once(self.init_container())
                .chain(settings.init_containers.iter().cloned())
                .collect(),
            container: Some(Container {
                name: "main".into(),
                image: resolved
                    .image
                    .unwrap_or_else(|| self.options.kfpd_image.clone()),
                image_pull_policy: settings.image_pull_policy.clone(),
                command: vec![format!("{LAUNCHER_DIR}/kfpd"), "launcher".into()],
                args: self.launcher_args(),
                env,
                env_from: self.env_from(),
                resources: resolved.resources,
                volume_mounts: mounts,
                // The user's image decides its own user and capabilities, as
                // upstream leaves them (many ML images run as root and install
                // packages at start), unless the pipeline sets them.
                security_context: settings.security_context.clone(),
                restart_policy: None,
            }),
            volumes,
            node_selector: settings.node_selector.clone(),
            tolerations: settings.tolerations.clone(),
            affinity: settings.affinity.clone(),
            security_context: Some(pod_security()),
            active_deadline_seconds: settings.active_deadline_seconds,
            retry_strategy: retry.and_then(retry_strategy),
            pod_spec_patch,
            ..Template::default()
        })
    }

    fn launcher_args(&self) -> Vec<String> {
        vec![
            "--server".into(),
            self.options.server_grpc.clone(),
            "--run-id".into(),
            self.options.run_id(),
            "--task-path".into(),
            format!("{{{{inputs.parameters.{TASK_PATH_INPUT}}}}}"),
        ]
    }

    fn env_from(&self) -> Vec<EnvFromSource> {
        vec![
            EnvFromSource {
                config_map_ref: Some(NameRef {
                    name: self.options.launcher_config_map.clone(),
                    optional: Some(true),
                }),
                secret_ref: None,
            },
            EnvFromSource {
                config_map_ref: None,
                secret_ref: Some(NameRef {
                    name: self.options.artifact_secret.clone(),
                    optional: Some(true),
                }),
            },
        ]
    }

    fn init_container(&self) -> Container {
        let mut limits = BTreeMap::new();
        limits.insert("memory".to_string(), "128Mi".to_string());
        let mut requests = BTreeMap::new();
        requests.insert("cpu".to_string(), "50m".to_string());
        requests.insert("memory".to_string(), "32Mi".to_string());
        Container {
            name: "kfpd-init".into(),
            image: self.options.kfpd_image.clone(),
            command: vec![
                "kfpd".into(),
                "launcher".into(),
                "--copy".into(),
                format!("{LAUNCHER_DIR}/kfpd"),
            ],
            resources: Resources { limits, requests },
            volume_mounts: vec![VolumeMount {
                name: LAUNCHER_VOLUME.into(),
                mount_path: LAUNCHER_DIR.into(),
                sub_path: None,
            }],
            security_context: Some(container_security()),
            ..Container::default()
        }
    }

    /// The token's variable, mount and volume: none unless in multi-user mode.
    fn token_env(&self) -> Option<EnvVar> {
        self.options
            .service_account_token
            .then(|| EnvVar::value(TOKEN_ENV, format!("{TOKEN_DIR}/token")))
    }

    fn token_mount(&self) -> Option<VolumeMount> {
        self.options.service_account_token.then(|| VolumeMount {
            name: TOKEN_VOLUME.into(),
            mount_path: TOKEN_DIR.into(),
            sub_path: None,
        })
    }

    fn token_volume(&self) -> Option<Volume> {
        self.options.service_account_token.then(|| Volume {
            name: TOKEN_VOLUME.into(),
            projected: Some(ProjectedVolume {
                sources: vec![VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        audience: TOKEN_AUDIENCE.into(),
                        expiration_seconds: TOKEN_EXPIRATION_SECONDS,
                        path: "token".into(),
                    }),
                }],
            }),
            ..Volume::default()
        })
    }

    /// The driver request: an `http` template, run by Argo's agent, no pod; in
    /// multi-user mode a `kfpd driver` pod sending its service-account token,
    /// since the agent can send no token of the run's service account.
    fn driver_template(&self) -> Template {
        if self.options.service_account_token {
            return self.driver_pod_template();
        }
        let body = format!(
            "{{\"task_path\":\"{{{{inputs.parameters.{TASK_PATH_INPUT}}}}}\",\
             \"workflow\":\"{{{{workflow.name}}}}\",\
             \"pod_spec_patch\":{{{{inputs.parameters.{WANT_PATCH_INPUT}}}}}}}"
        );
        Template {
            name: DRIVER_TEMPLATE.into(),
            inputs: Inputs {
                parameters: vec![
                    Parameter::input(TASK_PATH_INPUT),
                    Parameter::input_or(WANT_PATCH_INPUT, "false"),
                ],
            },
            http: Some(Http {
                method: "POST".into(),
                url: format!(
                    "{}/apis/v2beta1/runs/{}/drive",
                    self.options.server_url.trim_end_matches('/'),
                    self.options.run_id()
                ),
                headers: vec![HttpHeader {
                    name: "Content-Type".into(),
                    value: "application/json".into(),
                }],
                body: Some(body),
                timeout_seconds: Some(60),
                success_condition: Some("response.statusCode == 200".into()),
            }),
            ..Template::default()
        }
    }

    /// The driver request made by `kfpd driver`, whose stdout (the server's
    /// answer) is the node's `outputs.result`, as the `http` template's body is.
    fn driver_pod_template(&self) -> Template {
        let mut limits = BTreeMap::new();
        limits.insert("memory".to_string(), "64Mi".to_string());
        let mut requests = BTreeMap::new();
        requests.insert("cpu".to_string(), "10m".to_string());
        requests.insert("memory".to_string(), "16Mi".to_string());
        Template {
            name: DRIVER_TEMPLATE.into(),
            inputs: Inputs {
                parameters: vec![
                    Parameter::input(TASK_PATH_INPUT),
                    Parameter::input_or(WANT_PATCH_INPUT, "false"),
                ],
            },
            container: Some(Container {
                name: "main".into(),
                image: self.options.kfpd_image.clone(),
                command: vec!["kfpd".into(), "driver".into()],
                args: vec![
                    "--server".into(),
                    self.options.server_url.trim_end_matches('/').to_string(),
                    "--run-id".into(),
                    self.options.run_id(),
                    "--task-path".into(),
                    format!("{{{{inputs.parameters.{TASK_PATH_INPUT}}}}}"),
                    "--workflow".into(),
                    "{{workflow.name}}".into(),
                    format!("--pod-spec-patch={{{{inputs.parameters.{WANT_PATCH_INPUT}}}}}"),
                ],
                env: self.token_env().into_iter().collect(),
                resources: Resources { limits, requests },
                volume_mounts: self.token_mount().into_iter().collect(),
                security_context: Some(container_security()),
                ..Container::default()
            }),
            volumes: self.token_volume().into_iter().collect(),
            security_context: Some(pod_security()),
            ..Template::default()
        }
    }

    /// An importer that copies its artifact into the workspace.
    fn importer_template(&self) -> Template {
        let mut mounts = Vec::new();
        let mut env = vec![
            EnvVar::field("KFPD_POD_NAME", "metadata.name"),
            EnvVar::field("KFPD_POD_UID", "metadata.uid"),
            EnvVar::field("KFPD_NAMESPACE", "metadata.namespace"),
        ];
        if self.workspace {
            mounts.push(VolumeMount {
                name: WORKSPACE_VOLUME.into(),
                mount_path: WORKSPACE_PATH.into(),
                sub_path: None,
            });
            env.push(EnvVar::value("KFPD_WORKSPACE", WORKSPACE_PATH));
        }
        env.extend(self.token_env());
        mounts.extend(self.token_mount());
        Template {
            name: IMPORTER_TEMPLATE.into(),
            inputs: Inputs {
                parameters: vec![Parameter::input(TASK_PATH_INPUT)],
            },
            container: Some(Container {
                name: "main".into(),
                image: self.options.kfpd_image.clone(),
                command: vec!["kfpd".into(), "launcher".into()],
                args: self.launcher_args(),
                env,
                env_from: self.env_from(),
                volume_mounts: mounts,
                security_context: Some(container_security()),
                ..Container::default()
            }),
            volumes: self.token_volume().into_iter().collect(),
            security_context: Some(pod_security()),
            ..Template::default()
        }
    }

    fn pvc_input(
        &self,
        name: &str,
        task: &PipelineTaskSpec,
        component: &ComponentSpec,
        scope: &Scope<'a>,
        input: &str,
    ) -> Result<Value, Error> {
        let declared = component.input_definitions.parameters.contains_key(input);
        if !declared && !task.inputs.parameters.contains_key(input) {
            return Ok(Value::Null);
        }
        match scope.task_input(task, component, input) {
            Bound::Known(value) => Ok(value),
            Bound::Runtime => Err(Error::Unsupported(format!(
                "task {name:?}: input {input:?} of a PVC task must be a constant or a pipeline \
                 parameter"
            ))),
        }
    }

    fn create_pvc_template(
        &self,
        name: &str,
        task: &PipelineTaskSpec,
        component: &ComponentSpec,
        scope: &Scope<'a>,
    ) -> Result<Template, Error> {
        let pvc_name = match scope.pvc_name(task, component) {
            Bound::Known(Value::String(s)) => s,
            _ => {
                return Err(Error::Unsupported(format!(
                    "task {name:?}: the PVC name must be a constant or a pipeline parameter"
                )))
            }
        };
        let size = match self.pvc_input(name, task, component, scope, "size")? {
            Value::String(s) if !s.is_empty() => s,
            other => {
                return Err(Error::Spec(format!(
                    "task {name:?}: the PVC size must be a quantity such as \"5Gi\", found {other}"
                )))
            }
        };
        let access_modes = match self.pvc_input(name, task, component, scope, "access_modes")? {
            Value::Array(modes) => modes
                .iter()
                .map(|m| m.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    Error::Spec(format!("task {name:?}: access_modes must be strings"))
                })?,
            other => {
                return Err(Error::Spec(format!(
                    "task {name:?}: access_modes must be a list, found {other}"
                )))
            }
        };
        let text = |input: &str| -> Result<Option<String>, Error> {
            Ok(match self.pvc_input(name, task, component, scope, input)? {
                Value::String(s) if !s.is_empty() => Some(s),
                _ => None,
            })
        };
        let default_class = matches!(
            self.pvc_input(name, task, component, scope, "default_storage_class")?,
            Value::Bool(true)
        );
        let storage_class = if default_class {
            None
        } else {
            text("storage_class_name")?
        };
        let annotations: BTreeMap<String, String> =
            match self.pvc_input(name, task, component, scope, "annotations")? {
                Value::Object(map) => map
                    .into_iter()
                    .map(|(k, v)| match v {
                        Value::String(s) => (k, s),
                        other => (k, other.to_string()),
                    })
                    .collect(),
                _ => BTreeMap::new(),
            };
        let mut requests = BTreeMap::new();
        requests.insert("storage".to_string(), size);
        let manifest = serde_json::json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": ObjectMeta {
                name: Some(pvc_name),
                annotations,
                ..ObjectMeta::default()
            },
            "spec": PvcSpec {
                access_modes,
                storage_class_name: storage_class,
                volume_name: text("volume_name")?,
                resources: PvcResources { requests },
            },
        });
        Ok(Template {
            name: format!("{name}-create"),
            resource: Some(ResourceTemplate {
                action: "create".into(),
                manifest: to_manifest(&manifest)?,
                flags: Vec::new(),
            }),
            ..Template::default()
        })
    }

    fn delete_pvc_template(
        &self,
        name: &str,
        task: &PipelineTaskSpec,
        component: &ComponentSpec,
        scope: &Scope<'a>,
    ) -> Result<Template, Error> {
        let pvc_name = match self.pvc_input(name, task, component, scope, "pvc_name")? {
            Value::String(s) if !s.is_empty() => s,
            other => {
                return Err(Error::Spec(format!(
                    "task {name:?}: pvc_name must be a non-empty string, found {other}"
                )))
            }
        };
        let manifest = serde_json::json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": pvc_name},
        });
        Ok(Template {
            name: format!("{name}-delete"),
            resource: Some(ResourceTemplate {
                action: "delete".into(),
                manifest: to_manifest(&manifest)?,
                flags: vec!["--ignore-not-found".into()],
            }),
            ..Template::default()
        })
    }

    fn workflow(
        &self,
        package: &Package,
        kubernetes: Option<&kfpd_ir::spec::SinglePlatformSpec>,
        templates: Vec<Template>,
    ) -> Workflow {
        let name = package.pipeline_name();
        let base = name.rsplit('/').next().unwrap_or(name);
        let mut labels = BTreeMap::new();
        labels.insert(V2_COMPONENT.to_string(), "true".to_string());
        if let Some(run_id) = &self.options.run_id {
            labels.insert("pipeline/runid".to_string(), run_id.clone());
        }
        let mut annotations = BTreeMap::new();
        annotations.insert(
            "kfpd.io/argo-version".to_string(),
            self.options.argo_version.as_str().to_string(),
        );
        let mut pod_labels = BTreeMap::new();
        pod_labels.insert(V2_COMPONENT.to_string(), "true".to_string());
        let pod_annotations = pod_labels.clone();

        let config = kubernetes.and_then(|k| k.pipeline_config.as_ref());
        let ttl = config.and_then(|c| {
            let strategy = TtlStrategy {
                seconds_after_completion: Some(c.resource_ttl_on_completion).filter(|s| *s > 0),
                seconds_after_success: Some(c.resource_ttl_on_success).filter(|s| *s > 0),
                seconds_after_failure: Some(c.resource_ttl_on_failure).filter(|s| *s > 0),
            };
            (strategy != TtlStrategy::default()).then_some(strategy)
        });
        let workspace = config.and_then(|c| c.workspace.as_ref());
        // A retried run's Workflow mounts the claim of the one it replaces.
        let volumes = match (workspace, &self.options.workspace_claim) {
            (Some(_), Some(claim)) => vec![Volume {
                name: WORKSPACE_VOLUME.into(),
                persistent_volume_claim: Some(PvcVolume {
                    claim_name: claim.clone(),
                }),
                ..Volume::default()
            }],
            _ => Vec::new(),
        };
        let volume_claim_templates = workspace
            .filter(|_| volumes.is_empty())
            .map(|workspace| {
                let patch = workspace
                    .kubernetes
                    .as_ref()
                    .and_then(|k| k.pvc_spec_patch.as_ref());
                let access_modes = patch
                    .and_then(|p| p.get("accessModes"))
                    .and_then(Value::as_array)
                    .map(|modes| {
                        modes
                            .iter()
                            .filter_map(|m| m.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_else(|| vec!["ReadWriteOnce".to_string()]);
                let storage_class_name = patch
                    .and_then(|p| p.get("storageClassName"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let mut requests = BTreeMap::new();
                requests.insert("storage".to_string(), workspace.size.clone());
                vec![PersistentVolumeClaim {
                    metadata: ObjectMeta {
                        name: Some(WORKSPACE_VOLUME.to_string()),
                        ..ObjectMeta::default()
                    },
                    spec: PvcSpec {
                        access_modes,
                        storage_class_name,
                        volume_name: None,
                        resources: PvcResources { requests },
                    },
                }]
            })
            .unwrap_or_default();

        Workflow {
            api_version: "argoproj.io/v1alpha1".into(),
            kind: "Workflow".into(),
            metadata: ObjectMeta {
                name: None,
                generate_name: Some(format!("{base}-")),
                labels,
                annotations,
            },
            spec: WorkflowSpec {
                entrypoint: ROOT_TEMPLATE.into(),
                service_account_name: Some(self.options.service_account.clone()),
                pod_metadata: Some(Metadata {
                    labels: pod_labels,
                    annotations: pod_annotations,
                }),
                // No runAsNonRoot: it would keep every image that runs as root
                // (most ML images) from starting.
                security_context: Some(pod_security()),
                active_deadline_seconds: config
                    .map(|c| i64::from(c.active_deadline_seconds))
                    .filter(|s| *s > 0),
                ttl_strategy: ttl,
                volumes,
                volume_claim_templates,
                templates,
            },
        }
    }
}

/// The `depends` of a task's first node, from its upstream tasks.
///
/// A skipped upstream (cached, or not run) does not hold a task back: its driver
/// request decides whether it runs. A failed one does, unless the task runs once
/// its upstream ended whatever happened (exit handlers, `ignore_upstream_failure`).
fn depends(task: &PipelineTaskSpec, strategy: TriggerStrategy) -> Option<String> {
    let upstream = task.upstream_tasks();
    if upstream.is_empty() {
        return None;
    }
    let clauses: Vec<String> = upstream
        .iter()
        .map(|dep| match strategy {
            TriggerStrategy::AllUpstreamTasksCompleted => format!(
                "({dep}.Succeeded || {dep}.Skipped || {dep}.Failed || {dep}.Errored || \
                 {dep}.Omitted)"
            ),
            _ => format!("({dep}.Succeeded || {dep}.Skipped)"),
        })
        .collect();
    Some(clauses.join(" && "))
}

fn driver_task(task: &str, node: &str, depends: Option<String>, wants_patch: bool) -> DagTask {
    let mut parameters = vec![Parameter::argument(TASK_PATH_INPUT, task_path(task))];
    if wants_patch {
        parameters.push(Parameter::argument(WANT_PATCH_INPUT, "true"));
    }
    DagTask {
        name: node.to_string(),
        template: DRIVER_TEMPLATE.into(),
        arguments: Arguments { parameters },
        depends,
        ..DagTask::default()
    }
}

/// Settings with no template field of their own (image pull secrets), as a
/// fixed pod spec patch.
fn static_patch(settings: &PodSettings) -> Option<String> {
    if settings.image_pull_secrets.is_empty() {
        return None;
    }
    let secrets: Vec<Value> = settings
        .image_pull_secrets
        .iter()
        .map(|name| serde_json::json!({ "name": name }))
        .collect();
    Some(serde_json::json!({ "imagePullSecrets": secrets }).to_string())
}

fn retry_strategy(policy: &RetryPolicy) -> Option<RetryStrategy> {
    if policy.max_retry_count <= 0 {
        return None;
    }
    let seconds = |text: &Option<String>| {
        text.as_deref()
            .and_then(kfpd_ir::spec::parse_duration_secs)
            .map(|s| format!("{}s", s.round() as i64))
    };
    let factor = policy.backoff_factor.map(|f| {
        if f.fract() == 0.0 && f.abs() < 1e9 {
            Value::from(f as i64)
        } else {
            Value::String(f.to_string())
        }
    });
    let backoff = Backoff {
        duration: seconds(&policy.backoff_duration),
        factor,
        max_duration: seconds(&policy.backoff_max_duration),
    };
    Some(RetryStrategy {
        limit: Value::from(policy.max_retry_count),
        backoff: (backoff != Backoff::default()).then_some(backoff),
    })
}

fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        seccomp_profile: Some(SeccompProfile {
            kind: "RuntimeDefault".into(),
        }),
        ..PodSecurityContext::default()
    }
}

fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: vec!["ALL".into()],
        }),
        ..SecurityContext::default()
    }
}

fn to_manifest(value: &Value) -> Result<String, Error> {
    serde_yaml::to_string(value).map_err(|e| Error::Output(e.to_string()))
}
