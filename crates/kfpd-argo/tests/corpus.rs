//! Every pipeline of the shared corpus that uploads compiles, and every compiled
//! Workflow passes the full Workflow CRD schemas of Argo v3.7.8 and v4.0.5 with
//! unknown fields refused, the v4.0 CRD's CEL rules, and the lint of Argo's
//! validator checks.

mod support;

use kfpd_argo::{compile, lint::lint, to_yaml, Options};
use serde_json::{json, Value};
use support::schema::Crd;

fn crds(shared: &support::Shared) -> Vec<Crd> {
    ["v3.7.8", "v4.0.5"]
        .iter()
        .map(|v| {
            Crd::load(
                &shared.schemas.join(format!("crd-workflows-full-{v}.yaml")),
                v,
            )
        })
        .collect()
}

/// Compiles a package and reads its YAML back, as the cluster would see it.
fn compiled(package: &kfpd_ir::Package) -> Result<Value, String> {
    compiled_with(package, &Options::default())
}

fn compiled_with(package: &kfpd_ir::Package, options: &Options) -> Result<Value, String> {
    let workflow = compile(package, options).map_err(|e| e.to_string())?;
    let yaml = to_yaml(&workflow).map_err(|e| e.to_string())?;
    Ok(support::yaml_to_json(&yaml))
}

#[test]
fn every_corpus_pipeline_compiles_and_passes_the_schemas_rules_and_lint() {
    let Some(shared) = support::shared_dir() else {
        return;
    };
    let crds = crds(&shared);
    assert_eq!(crds[0].rule_count(), 0, "v3.7.8 has no CEL rules");
    assert!(
        crds[1].rule_count() >= 30,
        "v4.0.5 CEL rules: {}",
        crds[1].rule_count()
    );
    let mut failures = Vec::new();
    let mut checked = 0;
    // Single-user, and as a multi-user server compiles (token volumes, driver pods).
    let modes = [
        ("single-user", Options::default()),
        (
            "multi-user",
            Options {
                service_account_token: true,
                ..Options::default()
            },
        ),
    ];
    for row in support::manifest(&shared) {
        let Some(package) = support::package(&shared, &row) else {
            continue;
        };
        for (mode, options) in &modes {
            let workflow = match compiled_with(&package, options) {
                Ok(w) => w,
                Err(e) => {
                    failures.push(format!("{} ({mode}): does not compile: {e}", row.path));
                    continue;
                }
            };
            for crd in &crds {
                for error in crd.validate(&workflow) {
                    failures.push(format!("{} ({mode}, {}): {error}", row.path, crd.version));
                }
            }
            for problem in lint(&workflow) {
                failures.push(format!("{} ({mode}, lint): {problem}", row.path));
            }
            if options.service_account_token {
                failures.extend(
                    token_problems(&workflow)
                        .into_iter()
                        .map(|problem| format!("{} ({mode}): {problem}", row.path)),
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 240, "only {checked} compiles checked");
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A retried run's Workflow (`workspace_claim` set) mounts the workspace claim
/// it is given by name instead of a new claim template, and still passes the
/// schemas and the lint; every pod's workspace mount names that volume.
#[test]
fn a_workspace_given_an_existing_claim_mounts_it_by_name() {
    let Some(shared) = support::shared_dir() else {
        return;
    };
    let crds = crds(&shared);
    let options = Options {
        workspace_claim: Some("wf-abcde-kfp-workspace".into()),
        ..Options::default()
    };
    let mut checked = 0;
    for row in support::manifest(&shared) {
        let Some(package) = support::package(&shared, &row) else {
            continue;
        };
        let Ok(fresh) = compiled(&package) else {
            continue;
        };
        let retried = compile(&package, &options).expect("compile");
        let retried = support::yaml_to_json(&to_yaml(&retried).expect("yaml"));
        if fresh["spec"]["volumeClaimTemplates"].is_null() {
            // No workspace: the claim option changes nothing.
            assert_eq!(retried, fresh, "{}", row.path);
            continue;
        }
        assert!(
            retried["spec"]["volumeClaimTemplates"].is_null(),
            "{}",
            row.path
        );
        assert_eq!(
            retried["spec"]["volumes"],
            json!([{"name": "kfp-workspace",
                    "persistentVolumeClaim": {"claimName": "wf-abcde-kfp-workspace"}}]),
            "{}",
            row.path
        );
        let mut mounts = 0;
        for template in retried["spec"]["templates"].as_array().unwrap() {
            for container in std::iter::once(&template["container"])
                .chain(template["initContainers"].as_array().into_iter().flatten())
            {
                for mount in container["volumeMounts"].as_array().into_iter().flatten() {
                    if mount["mountPath"] == "/kfp-workspace" {
                        assert_eq!(mount["name"], "kfp-workspace", "{}", row.path);
                        mounts += 1;
                    }
                }
            }
        }
        assert!(mounts > 0, "{}: no pod mounts the workspace", row.path);
        for crd in &crds {
            assert_eq!(crd.validate(&retried), Vec::<String>::new(), "{}", row.path);
        }
        assert_eq!(lint(&retried), Vec::<String>::new(), "{}", row.path);
        checked += 1;
    }
    assert!(checked >= 2, "only {checked} pipelines with a workspace");
}

/// What multi-user mode needs of a Workflow: no `http` template (Argo's agent
/// cannot send a pod's token), and every pod that calls the API server (`kfpd
/// driver`, `kfpd launcher`) with the projected token of audience
/// `pipelines.kubeflow.org` mounted where `KF_PIPELINES_SA_TOKEN_PATH` says.
/// Resource templates (PVCs) call nothing and get none.
fn token_problems(workflow: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let token = json!({"name": "kfpd-sa-token", "projected": {"sources": [{"serviceAccountToken": {
        "audience": "pipelines.kubeflow.org", "expirationSeconds": 7200, "path": "token"}}]}});
    for template in workflow["spec"]["templates"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = template["name"].as_str().unwrap_or_default();
        if template.get("http").is_some() {
            problems.push(format!("template {name} is an http template"));
        }
        let Some(container) = template.get("container") else {
            continue;
        };
        let command = container["command"].as_array().cloned().unwrap_or_default();
        let calls_server = command
            .iter()
            .any(|word| word == "launcher" || word == "driver");
        let has_volume = template["volumes"]
            .as_array()
            .is_some_and(|volumes| volumes.contains(&token));
        let has_mount = container["volumeMounts"].as_array().is_some_and(|mounts| {
            mounts.contains(&json!({"name": "kfpd-sa-token", "mountPath": "/var/run/secrets/kubeflow/pipelines"}))
        });
        let has_env = container["env"].as_array().is_some_and(|env| {
            env.contains(&json!({"name": "KF_PIPELINES_SA_TOKEN_PATH",
                "value": "/var/run/secrets/kubeflow/pipelines/token"}))
        });
        if calls_server && !(has_volume && has_mount && has_env) {
            problems.push(format!(
                "template {name} calls the server without the token (volume {has_volume}, mount {has_mount}, env {has_env})"
            ));
        }
        if !calls_server && (has_volume || has_mount || has_env) {
            problems.push(format!("template {name} calls nothing but has the token"));
        }
    }
    problems
}

/// The checks can fail: each kind of fault planted in a good Workflow is found.
#[test]
fn planted_faults_are_found() {
    let Some(shared) = support::shared_dir() else {
        return;
    };
    let crds = crds(&shared);
    let row = support::manifest(&shared)
        .into_iter()
        .find(|r| r.path == "hello_world.yaml")
        .expect("hello_world row");
    let good = compiled(&support::package(&shared, &row).unwrap()).unwrap();
    for crd in &crds {
        assert_eq!(crd.validate(&good), Vec::<String>::new(), "{}", crd.version);
    }

    let mut unknown = good.clone();
    unknown["spec"]["templates"][0]["bogus"] = json!(1);
    let mut wrong_type = good.clone();
    wrong_type["spec"]["templates"][0]["dag"]["tasks"] = json!("not a list");
    let mut nested_unknown = good.clone();
    let pod = pod_template(&nested_unknown);
    nested_unknown["spec"]["templates"][pod]["container"]["volumeMounts"][0]["readonly"] =
        json!(true);
    for (what, workflow) in [
        ("unknown", &unknown),
        ("wrong type", &wrong_type),
        ("nested unknown", &nested_unknown),
    ] {
        for crd in &crds {
            assert!(
                !crd.validate(workflow).is_empty(),
                "{what} passes {}",
                crd.version
            );
        }
    }

    // A CEL rule of v4.0 only: activeDeadlineSeconds is for leaf templates.
    let mut dag_deadline = good.clone();
    dag_deadline["spec"]["templates"][0]["activeDeadlineSeconds"] = json!(5);
    assert_eq!(crds[0].validate(&dag_deadline), Vec::<String>::new());
    let errors = crds[1].validate(&dag_deadline).join("\n");
    assert!(
        errors.contains("activeDeadlineSeconds is only valid for leaf templates"),
        "{errors}"
    );
    let mut both = good.clone();
    both["spec"]["templates"][0]["dag"]["tasks"][1]["dependencies"] = json!(["echo-driver"]);
    let errors = crds[1].validate(&both).join("\n");
    assert!(
        errors.contains("cannot use both 'depends' and 'dependencies'"),
        "{errors}"
    );

    let mut dangling = good.clone();
    dangling["spec"]["templates"][0]["dag"]["tasks"][1]["depends"] = json!("nobody.Succeeded");
    assert!(lint(&dangling).join("\n").contains("depends on \"nobody\""));
}

fn pod_template(workflow: &Value) -> usize {
    workflow["spec"]["templates"]
        .as_array()
        .unwrap()
        .iter()
        .position(|t| t.get("container").is_some())
        .expect("a pod template")
}

/// The layout: every pod of a task is created only after its driver request said
/// so (so a cache hit never schedules one), and a run starts fewer pods than
/// upstream's Workflow for the same pipeline (loops counted with 2 items on both).
#[test]
fn no_pod_without_a_driver_decision_and_fewer_pods_than_upstream() {
    let Some(shared) = support::shared_dir() else {
        return;
    };
    let Some(golden) = kfpd_testdata::Dir::ArgoGolden.require(&kfpd_testdata::current_test())
    else {
        return;
    };
    let mut compared = 0;
    for row in support::manifest(&shared) {
        let Some(package) = support::package(&shared, &row) else {
            continue;
        };
        let workflow = compiled(&package).unwrap();
        let templates = workflow["spec"]["templates"].as_array().unwrap();
        let kind = |name: &str| {
            templates
                .iter()
                .find(|t| t["name"] == name)
                .map(|t| {
                    ["container", "resource", "http", "dag"]
                        .into_iter()
                        .find(|k| t.get(*k).is_some())
                        .unwrap_or("")
                })
                .unwrap_or("")
        };
        for template in templates.iter().filter(|t| t.get("dag").is_some()) {
            for task in template["dag"]["tasks"].as_array().unwrap() {
                let name = task["name"].as_str().unwrap();
                match kind(task["template"].as_str().unwrap()) {
                    "container" | "resource" => {
                        assert_eq!(
                            task["depends"],
                            format!("{name}-driver.Succeeded"),
                            "{}: pod task {name}",
                            row.path
                        );
                        assert_eq!(
                            task["when"],
                            format!(
                                "{{{{=jsonpath(tasks['{name}-driver'].outputs.result, \
                                 '$.execute')}}}} == true"
                            ),
                            "{}: pod task {name}",
                            row.path
                        );
                    }
                    "" => panic!("{}: task {name} has no template", row.path),
                    _ => {}
                }
            }
        }
        if row.golden.is_empty() {
            continue;
        }
        let text = std::fs::read_to_string(golden.join(&row.golden)).unwrap();
        let upstream = support::yaml_to_json(&text);
        let two = |_: &[String]| 2;
        let ours = kfpd_argo::pods::count(&workflow, &two, &|_, _| false);
        let theirs = kfpd_argo::pods::count(&upstream, &two, &|_, _| false);
        assert!(
            ours.total() < theirs.total(),
            "{}: kfpd {} pods, upstream {}",
            row.path,
            ours.total(),
            theirs.total()
        );
        compared += 1;
    }
    assert!(compared > 100, "only {compared} compared with a golden");
}
