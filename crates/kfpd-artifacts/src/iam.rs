//! Per-namespace object store keys made through an AWS-style IAM API (AWS IAM,
//! SeaweedFS's `weed iam`, Ceph RGW): one user per namespace whose only policy
//! reaches that namespace's artifact prefix, and an access key of that user.

use object_store::aws::{AwsAuthorizer, AwsCredential};
use object_store::client::HttpRequestBody;

/// The IAM API version every request names.
const IAM_VERSION: &str = "2010-05-08";

/// Why a key could not be made; the message names the request and what the API said.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid namespace {namespace:?}: {reason}")]
    Namespace { namespace: String, reason: String },
    #[error("cannot reach the IAM API at {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("the IAM API at {endpoint} refused {action} ({status}): {code}: {message}")]
    Refused {
        endpoint: String,
        action: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("the IAM API at {endpoint} answered {action} without {field}")]
    Answer {
        endpoint: String,
        action: String,
        field: String,
    },
}

/// An IAM API and the administrator's key it is called with.
#[derive(Clone, Debug)]
pub struct Admin {
    /// `http(s)://host:port`: the IAM API (on SeaweedFS its own port, on moto the S3 one).
    pub endpoint: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
}

/// A key made for one namespace.
#[derive(Clone, Debug)]
pub struct NamespaceKey {
    pub user: String,
    pub access_key: String,
    pub secret_key: String,
}

/// The IAM user a namespace's key belongs to.
pub fn user_name(namespace: &str) -> String {
    format!("kfpd-{namespace}")
}

/// The policy that lets a key read, write, list and delete under `prefix` (no
/// leading slash, ending in `/`) of `bucket` and nothing else.
pub fn prefix_policy(bucket: &str, prefix: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": format!("arn:aws:s3:::{bucket}/{prefix}*"),
            },
            {
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": format!("arn:aws:s3:::{bucket}"),
                "Condition": {"StringLike": {"s3:prefix": format!("{prefix}*")}},
            },
        ],
    })
    .to_string()
}

/// A namespace is a Kubernetes namespace name: it becomes an IAM user name and a
/// key prefix, so nothing else may pass.
pub fn check_namespace(namespace: &str) -> Result<(), Error> {
    let refuse = |reason: &str| Error::Namespace {
        namespace: namespace.to_string(),
        reason: reason.to_string(),
    };
    if namespace.is_empty() || namespace.len() > 63 {
        return Err(refuse("it must have 1 to 63 characters"));
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if !namespace.chars().all(allowed) {
        return Err(refuse("only lowercase letters, digits and '-' are allowed"));
    }
    if namespace.starts_with('-') || namespace.ends_with('-') {
        return Err(refuse("it must start and end with a letter or digit"));
    }
    Ok(())
}

impl Admin {
    /// Makes (or finds) the namespace's user, sets its policy to `policy` and
    /// creates a new access key of it. Run again, it replaces the policy and adds
    /// a key (IAM keeps at most two per user; delete the old one once unused).
    pub async fn namespace_key(
        &self,
        namespace: &str,
        policy: &str,
    ) -> Result<NamespaceKey, Error> {
        check_namespace(namespace)?;
        let http = reqwest::Client::new();
        let user = user_name(namespace);
        match self.call(&http, "CreateUser", &[("UserName", &user)]).await {
            Ok(_) => tracing::info!(user = %user, "created iam user"),
            Err(Error::Refused { code, .. }) if code == "EntityAlreadyExists" => {
                tracing::info!(user = %user, "iam user exists; its policy is replaced")
            }
            Err(error) => return Err(error),
        }
        self.call(
            &http,
            "PutUserPolicy",
            &[
                ("UserName", &user),
                ("PolicyName", "kfpd-namespace-artifacts"),
                ("PolicyDocument", policy),
            ],
        )
        .await?;
        let created = self
            .call(&http, "CreateAccessKey", &[("UserName", &user)])
            .await?;
        let field = |name: &str| {
            xml_field(&created, name).ok_or_else(|| Error::Answer {
                endpoint: self.endpoint.clone(),
                action: "CreateAccessKey".into(),
                field: name.into(),
            })
        };
        Ok(NamespaceKey {
            access_key: field("AccessKeyId")?,
            secret_key: field("SecretAccessKey")?,
            user,
        })
    }

    /// One signed IAM request; the answer's body when it succeeded.
    async fn call(
        &self,
        http: &reqwest::Client,
        action: &str,
        parameters: &[(&str, &str)],
    ) -> Result<String, Error> {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("Action", action)
            .extend_pairs(parameters.iter().copied())
            .append_pair("Version", IAM_VERSION)
            .finish();
        let url = format!("{}/", self.endpoint.trim_end_matches('/'));
        let unreachable = |reason: String| Error::Unreachable {
            endpoint: self.endpoint.clone(),
            reason,
        };
        let mut request = http::Request::builder()
            .method(http::Method::POST)
            .uri(&url)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .body(HttpRequestBody::from(body.clone().into_bytes()))
            .map_err(|error| unreachable(format!("cannot build the request: {error}")))?;
        let credential = AwsCredential {
            key_id: self.access_key.clone(),
            secret_key: self.secret_key.clone(),
            token: None,
        };
        AwsAuthorizer::new(&credential, "iam", &self.region).authorize(&mut request, None);
        let mut send = http.post(&url).body(body);
        for (name, value) in request.headers() {
            send = send.header(name, value);
        }
        let response = send
            .send()
            .await
            .map_err(|error| unreachable(error.to_string()))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|error| unreachable(error.to_string()))?;
        if status.is_success() {
            return Ok(text);
        }
        Err(Error::Refused {
            endpoint: self.endpoint.clone(),
            action: action.to_string(),
            status: status.as_u16(),
            code: xml_field(&text, "Code").unwrap_or_default(),
            message: xml_field(&text, "Message").unwrap_or(text),
        })
    }
}

/// The text of the first `<name>…</name>` element of an IAM answer.
fn xml_field(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(xml[start..end].trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_that_are_not_kubernetes_names_are_refused() {
        for bad in ["", "Team", "a/b", "-a", "a-", "a..b", &"x".repeat(64)] {
            assert!(check_namespace(bad).is_err(), "{bad:?}");
        }
        for good in ["team-a", "a", "kubeflow-user-example-com"] {
            assert!(check_namespace(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn the_policy_reaches_the_prefix_and_lists_only_under_it() {
        let policy: serde_json::Value =
            serde_json::from_str(&prefix_policy("mlpipeline", "v2/artifacts/namespaces/a/"))
                .expect("json");
        let statements = policy["Statement"].as_array().expect("statements");
        assert_eq!(
            statements[0]["Resource"],
            "arn:aws:s3:::mlpipeline/v2/artifacts/namespaces/a/*"
        );
        assert_eq!(
            statements[1]["Condition"]["StringLike"]["s3:prefix"],
            "v2/artifacts/namespaces/a/*"
        );
    }

    #[test]
    fn fields_are_read_from_iam_answers() {
        let answer = "<CreateAccessKeyResponse><CreateAccessKeyResult><AccessKey>\
                      <AccessKeyId>AK</AccessKeyId><SecretAccessKey>SK</SecretAccessKey>\
                      </AccessKey></CreateAccessKeyResult></CreateAccessKeyResponse>";
        assert_eq!(xml_field(answer, "AccessKeyId").as_deref(), Some("AK"));
        assert_eq!(xml_field(answer, "SecretAccessKey").as_deref(), Some("SK"));
        assert_eq!(xml_field(answer, "Nothing"), None);
    }
}
