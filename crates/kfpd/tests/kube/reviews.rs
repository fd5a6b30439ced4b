//! TokenReview and SubjectAccessReview as the API server answers them, for the
//! service-account tokens and role bindings a test scripts. Every review is
//! recorded with its body, like the other requests.

use super::*;

/// A token the API server knows.
struct ScriptedToken {
    token: String,
    user: String,
    groups: Vec<String>,
    audiences: Vec<String>,
}

/// One rule of a role binding: a user or group may do `verb` on `resource` in
/// `namespace` (`*` for any verb or resource).
struct Binding {
    subject: String,
    namespace: String,
    resource: String,
    verb: String,
}

#[derive(Default)]
pub(super) struct Script {
    tokens: Vec<ScriptedToken>,
    bindings: Vec<Binding>,
    /// Every review answered with this error status (kfpd's own account refused,
    /// or the API server failing).
    refuse: Option<u16>,
}

pub const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
pub const ACCESS_REVIEWS: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";

impl Kube {
    /// A token TokenReview accepts for `audiences`, naming `user` and `groups`.
    pub fn add_token(&self, token: &str, user: &str, groups: &[&str], audiences: &[&str]) {
        self.cluster
            .lock()
            .unwrap()
            .reviews
            .tokens
            .push(ScriptedToken {
                token: token.into(),
                user: user.into(),
                groups: groups.iter().map(|group| group.to_string()).collect(),
                audiences: audiences
                    .iter()
                    .map(|audience| audience.to_string())
                    .collect(),
            });
    }

    /// Lets `subject` (a user or a group) do `verb` on `resource` in `namespace`,
    /// in group `pipelines.kubeflow.org`.
    pub fn allow(&self, subject: &str, namespace: &str, resource: &str, verb: &str) {
        self.cluster.lock().unwrap().reviews.bindings.push(Binding {
            subject: subject.into(),
            namespace: namespace.into(),
            resource: resource.into(),
            verb: verb.into(),
        });
    }

    /// Answers every review with HTTP `code` from now on (`None`: answer again).
    pub fn refuse_reviews(&self, code: Option<u16>) {
        self.cluster.lock().unwrap().reviews.refuse = code;
    }

    /// The bodies of the reviews received at `path` (TOKEN_REVIEWS or ACCESS_REVIEWS).
    pub fn reviews(&self, path: &str) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|request| request.path == path)
            .map(|request| request.body)
            .collect()
    }
}

fn refusal(code: u16) -> Response {
    status(
        code,
        "Forbidden",
        "subjectaccessreviews.authorization.k8s.io is forbidden: User \"system:serviceaccount:kubeflow:ml-pipeline\" cannot create resource",
    )
}

pub(super) async fn token_review(
    State(kube): State<Kube>,
    Json(mut body): Json<Value>,
) -> Response {
    kube.record("POST", TOKEN_REVIEWS, &BTreeMap::new(), body.clone());
    let cluster = kube.cluster.lock().unwrap();
    if let Some(code) = cluster.reviews.refuse {
        return refusal(code);
    }
    let token = body["spec"]["token"].as_str().unwrap_or_default();
    // Without audiences the API server's own is meant.
    let wanted: Vec<String> = serde_json::from_value(body["spec"]["audiences"].clone())
        .unwrap_or_else(|_| vec!["https://kubernetes.default.svc".into()]);
    let known = cluster
        .reviews
        .tokens
        .iter()
        .find(|known| known.token == token);
    body["status"] = match known {
        None => json!({"authenticated": false, "error": "invalid bearer token"}),
        Some(known) => {
            let granted: Vec<&String> = wanted
                .iter()
                .filter(|audience| known.audiences.contains(audience))
                .collect();
            if granted.is_empty() {
                json!({"authenticated": false, "error": "token audiences are invalid for the target audiences"})
            } else {
                json!({
                    "authenticated": true,
                    "user": {"username": known.user, "groups": known.groups},
                    "audiences": granted,
                })
            }
        }
    };
    (StatusCode::CREATED, Json(body)).into_response()
}

pub(super) async fn access_review(
    State(kube): State<Kube>,
    Json(mut body): Json<Value>,
) -> Response {
    kube.record("POST", ACCESS_REVIEWS, &BTreeMap::new(), body.clone());
    let cluster = kube.cluster.lock().unwrap();
    if let Some(code) = cluster.reviews.refuse {
        return refusal(code);
    }
    let spec = &body["spec"];
    let attributes = &spec["resourceAttributes"];
    let mut subjects = vec![spec["user"].clone()];
    subjects.extend(spec["groups"].as_array().cloned().unwrap_or_default());
    let field = |name: &str| attributes[name].as_str().unwrap_or_default().to_string();
    let allowed = field("group") == "pipelines.kubeflow.org"
        && field("version") == "v1beta1"
        && cluster.reviews.bindings.iter().any(|binding| {
            subjects
                .iter()
                .any(|subject| subject == &json!(binding.subject))
                && binding.namespace == field("namespace")
                && (binding.resource == "*" || binding.resource == field("resource"))
                && (binding.verb == "*" || binding.verb == field("verb"))
        });
    body["status"] = if allowed {
        json!({"allowed": true, "reason": "RBAC: allowed by a RoleBinding"})
    } else {
        json!({"allowed": false})
    };
    (StatusCode::CREATED, Json(body)).into_response()
}
