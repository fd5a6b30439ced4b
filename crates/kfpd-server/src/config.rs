//! `kfpd serve` configuration: flags, `KFPD_*` environment variables, the variables
//! upstream KFP deployments already set, and an optional TOML file.
//!
//! Precedence, highest first: command-line flag, `KFPD_*` variable, upstream
//! variable (`DBCONFIG_MYSQLCONFIG_HOST` before `DBCONFIG_HOST`, …), config file,
//! built-in default. `docs/configuration.md` lists every key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config file {path}: {message}")]
    File { path: String, message: String },
    #[error("invalid setting {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// Flags of `kfpd serve`. Every flag can also be set by the environment variable
/// shown in `--help`, or by the same name (with `_`) in the `--config` file.
#[derive(Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// TOML file with settings named like the flags (`http_addr = "0.0.0.0:8888"`).
    #[arg(long, env = "KFPD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address of the REST API. [default: 127.0.0.1:8888]
    #[arg(long, env = "KFPD_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Address of the gRPC API, or `off` to serve REST only. [default: 127.0.0.1:8887]
    #[arg(long, env = "KFPD_GRPC_ADDR")]
    pub grpc_addr: Option<String>,
    /// Largest gRPC message in bytes, received or sent (a pipeline version carries
    /// its whole spec). [default: 67108864]
    #[arg(long, env = "KFPD_GRPC_MAX_MESSAGE_BYTES")]
    pub grpc_max_message_bytes: Option<usize>,
    /// Directory for the SQLite database and local artifacts. [default: ./kfpd-data]
    #[arg(long, env = "KFPD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Full database URL (sqlite://…, postgres://…, mysql://…); overrides the
    /// driver/host/port/user/password/name settings below.
    #[arg(long, env = "KFPD_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Database driver: sqlite, postgres or mysql. Upstream: DBDRIVERNAME (mysql|pgx),
    /// DB_DRIVER_NAME and dbType (mysql|postgres). [default: sqlite, or mysql when only DBCONFIG_HOST is set]
    #[arg(long, env = "KFPD_DB_DRIVER")]
    pub db_driver: Option<String>,
    /// Database host. Upstream: DBCONFIG_MYSQLCONFIG_HOST / DBCONFIG_POSTGRESQLCONFIG_HOST,
    /// then DBCONFIG_HOST. [default: mysql or postgresql, as upstream]
    #[arg(long, env = "KFPD_DB_HOST")]
    pub db_host: Option<String>,
    /// Database port. Upstream: DBCONFIG_*CONFIG_PORT, then DBCONFIG_PORT. [default: 3306 or 5432]
    #[arg(long, env = "KFPD_DB_PORT")]
    pub db_port: Option<u16>,
    /// Database user. Upstream: DBCONFIG_*CONFIG_USER, then DBCONFIG_USER. [default: root]
    #[arg(long, env = "KFPD_DB_USER")]
    pub db_user: Option<String>,
    /// Database password. Upstream: DBCONFIG_*CONFIG_PASSWORD, then DBCONFIG_PASSWORD.
    #[arg(long, env = "KFPD_DB_PASSWORD", hide_env_values = true)]
    pub db_password: Option<String>,
    /// Database name, created at start when missing. Upstream: DBCONFIG_*CONFIG_DBNAME,
    /// then DBCONFIG_DBNAME. [default: mlpipeline]
    #[arg(long, env = "KFPD_DB_NAME")]
    pub db_name: Option<String>,
    /// Extra URL parameters for the database connection (`sslmode=require`).
    /// Upstream: DBCONFIG_MYSQLCONFIG_EXTRAPARAMS (JSON object).
    #[arg(long, env = "KFPD_DB_PARAMS")]
    pub db_params: Option<String>,
    /// Seconds a database connection is reused. Upstream: DBCONFIG_CONMAXLIFETIME
    /// (a duration such as 120s). [default: 120s]
    #[arg(long, env = "KFPD_DB_CONN_MAX_LIFETIME")]
    pub db_conn_max_lifetime: Option<String>,
    /// How long to keep retrying an unreachable database at start. Upstream:
    /// INITCONNECTIONTIMEOUT. [default: 6m]
    #[arg(long, env = "KFPD_DB_INIT_TIMEOUT")]
    pub db_init_timeout: Option<String>,
    /// SQLite only: how long a write waits for other writers (of this or another
    /// process) to release the database before the request fails with 503.
    /// [default: 10s]
    #[arg(long, env = "KFPD_DB_BUSY_TIMEOUT")]
    pub db_busy_timeout: Option<String>,
    /// Namespace recurring runs report in single-user mode. Upstream: POD_NAMESPACE.
    /// [default: kubeflow]
    #[arg(long, env = "KFPD_NAMESPACE")]
    pub namespace: Option<String>,
    /// Multi-user mode (namespaced resources, no default experiment). Upstream: MULTIUSER.
    #[arg(long, env = "KFPD_MULTI_USER")]
    pub multi_user: Option<bool>,
    /// Multi-user mode: the header an authenticating proxy names the user in.
    /// Upstream: KUBEFLOW_USERID_HEADER. [default: kubeflow-userid]
    #[arg(long, env = "KFPD_USER_HEADER")]
    pub user_header: Option<String>,
    /// Multi-user mode: the prefix before the user in that header, removed.
    /// Upstream: KUBEFLOW_USERID_PREFIX. [default: none]
    #[arg(long, env = "KFPD_USER_PREFIX")]
    pub user_prefix: Option<String>,
    /// Multi-user mode: addresses or CIDR blocks of the proxies whose user header
    /// is believed (`10.0.0.0/8,127.0.0.1`); from any other peer the header is
    /// refused. [default: none, the header is never believed]
    #[arg(
        long,
        env = "KFPD_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_name = "CIDRS"
    )]
    pub trusted_proxies: Option<Vec<String>>,
    /// Multi-user mode: YAML file binding users and groups to roles in namespaces
    /// (docs/multi-user.md), read again when it changes.
    #[arg(long, env = "KFPD_POLICY_FILE")]
    pub policy_file: Option<PathBuf>,
    /// Service account runs get when they name none. Upstream:
    /// DEFAULTPIPELINERUNNERSERVICEACCOUNT. [default: pipeline-runner; in
    /// multi-user mode default-editor, the account Kubeflow makes in every
    /// profile namespace]
    #[arg(long, env = "KFPD_DEFAULT_SERVICE_ACCOUNT")]
    pub default_service_account: Option<String>,
    /// Largest accepted request body in bytes (uploads included). [default: 33554432]
    #[arg(long, env = "KFPD_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Open connections per listener (REST, gRPC); more are closed as soon as
    /// accepted (REST answers them 503). [default: 10000]
    #[arg(long, env = "KFPD_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// How long a client may take to send a request's head once its first byte
    /// arrived (HTTP/2: from connecting to its first call). [default: 30s]
    #[arg(long, env = "KFPD_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: Option<String>,
    /// How long a connection may stay open with no request in flight. [default: 120s]
    #[arg(long, env = "KFPD_IDLE_TIMEOUT")]
    pub idle_timeout: Option<String>,
    /// Grace for a request body before the minimum rate applies: a body must
    /// arrive within this long plus a second for every `--min-body-rate` bytes.
    /// [default: 60s]
    #[arg(long, env = "KFPD_BODY_READ_TIMEOUT")]
    pub body_read_timeout: Option<String>,
    /// Bytes per second a request body must keep up (0: the whole body within
    /// `--body-read-timeout`). [default: 1024]
    #[arg(long, env = "KFPD_MIN_BODY_RATE")]
    pub min_body_rate: Option<u64>,
    /// What executes runs: `local` (tasks as processes on this machine), `argo`
    /// (each run's Argo Workflow is submitted to the Kubernetes cluster, in
    /// POD_NAMESPACE; docs/kubernetes.md) or `none` (an API-only server; runs stay
    /// PENDING until something else executes them, such as Argo pods, whose driver
    /// requests and `kfpd launcher` calls it answers). [default: local]
    #[arg(long, env = "KFPD_EXECUTOR")]
    pub executor: Option<String>,
    /// With `--executor argo`: the Argo Workflows version of the cluster, 3.7 or
    /// 4.0. [default: 3.7]
    #[arg(long, env = "KFPD_ARGO_VERSION")]
    pub argo_version: Option<String>,
    /// With `--executor argo`: whether this process watches Workflows and records
    /// their states (the persistence agent), `on`, or leaves it to a `kfpd agent`,
    /// `off`. [default: on]
    #[arg(long, env = "KFPD_AGENT")]
    pub agent: Option<String>,
    /// How long a finished Workflow stays in the cluster once its run's final
    /// state is recorded (the run's history stays in the database): 24h, 30m.
    /// [default: 24h]
    #[arg(long, env = "KFPD_WORKFLOW_TTL")]
    pub workflow_ttl: Option<String>,
    /// How old an unfinished run must be before the agent, finding no Workflow
    /// for it, ends it FAILED (its Workflow may still be on its way). [default: 120s]
    #[arg(long, env = "KFPD_AGENT_RECONCILE_GRACE")]
    pub agent_reconcile_grace: Option<String>,
    /// Where the persistence agent watches Workflows: a comma-separated list of
    /// namespaces, or `*` for every namespace (multi-user installs, where runs go
    /// to their own namespace; needs a ClusterRole). [default: POD_NAMESPACE]
    #[arg(long, env = "KFPD_AGENT_NAMESPACES")]
    pub agent_namespaces: Option<String>,
    /// The API server's host name as workflow pods reach it (driver requests on
    /// port 8888, launchers on 8887). [default: ml-pipeline.<namespace>.svc.cluster.local]
    #[arg(long, env = "KFPD_WORKFLOW_SERVER_HOST")]
    pub workflow_server_host: Option<String>,
    /// Whether this process fires recurring runs: `on` or `off` (when a separate
    /// `kfpd scheduler` does it). Any number of schedulers may share a database.
    /// [default: on]
    #[arg(long, env = "KFPD_SCHEDULER")]
    pub scheduler: Option<String>,
    /// How many task processes may run at once, over all runs. [default: 64]
    #[arg(long, env = "KFPD_MAX_PARALLEL_TASKS")]
    pub max_parallel_tasks: Option<usize>,
    /// How long a driver request waits for an upstream task this server has not
    /// yet seen end: Argo drives a task once its upstream nodes ended, but the end
    /// of a PVC task or of a pod killed before its launcher reported comes with the
    /// agent's next report. `0s` refuses at once. [default: 30s]
    #[arg(long, env = "KFPD_DRIVER_PATIENCE")]
    pub driver_patience: Option<String>,
    /// Whether tasks may reuse the outputs of an earlier identical execution (runs
    /// and tasks can still turn caching off for themselves). Upstream: CACHEENABLED.
    /// [default: true]
    #[arg(long, env = "KFPD_CACHE_ENABLED")]
    pub cache_enabled: Option<bool>,
    /// How old a reused execution may be when the task sets no limit, as an ISO 8601
    /// duration (`P30D`, `PT12H`); empty means any age. Upstream:
    /// DEFAULT_CACHE_STALENESS.
    #[arg(long, env = "KFPD_DEFAULT_CACHE_STALENESS")]
    pub default_cache_staleness: Option<String>,
    /// Upper bound on the staleness any task may ask for (ISO 8601); empty means no
    /// bound. Upstream: MAXIMUM_CACHE_STALENESS.
    #[arg(long, env = "KFPD_MAXIMUM_CACHE_STALENESS")]
    pub maximum_cache_staleness: Option<String>,
    /// Requirement pip installs instead of the `kfp==X` a lightweight component's
    /// install preamble pins (`kfp==2.15.0`, or a wheel's path). Unset: the pin is
    /// honoured, as upstream.
    #[arg(long, env = "KFPD_KFP_PACKAGE")]
    pub kfp_package: Option<String>,
    /// Pipeline roots runs may name, comma-separated (`/data/experiments`,
    /// `file:///srv/kfp`, `s3://team-bucket/kfp`): a run's root must be one of them or
    /// lie under one; the default root is always allowed. Unset: any absolute path this
    /// server can write, and any existing bucket of its object store.
    #[arg(
        long,
        env = "KFPD_ALLOWED_PIPELINE_ROOTS",
        value_delimiter = ',',
        value_name = "ROOTS"
    )]
    pub allowed_pipeline_roots: Option<Vec<String>>,
    /// Log lines as `text` (coloured only when stderr is a terminal and NO_COLOR is
    /// unset) or `json` (one object a line with timestamp, level, target, message and
    /// fields, for log collectors). [default: text]
    #[arg(long, env = "KFPD_LOG_FORMAT", value_name = "text|json")]
    pub log_format: Option<String>,
    /// Image holding kfpd that workflow pods copy the launcher from (one image for
    /// every subcommand). Upstream: V2_LAUNCHER_IMAGE, then V2_DRIVER_IMAGE (upstream's
    /// own kfp-launcher/kfp-driver images are refused: they hold no kfpd).
    /// [default: ghcr.io/kfpd/kfpd:latest]
    #[arg(long, env = "KFPD_IMAGE")]
    pub kfpd_image: Option<String>,
    /// Secret in the run's namespace whose keys become the object store credentials
    /// of workflow pods. [default: mlpipeline-minio-artifact, upstream's]
    #[arg(long, env = "KFPD_ARTIFACT_SECRET")]
    pub artifact_secret: Option<String>,
    /// Whether a missing object store bucket is created at start (`true`, as
    /// upstream) or reported (`false`, for stores where kfpd may not create buckets).
    /// [default: true]
    #[arg(long, env = "KFPD_CREATE_BUCKET")]
    pub create_bucket: Option<bool>,
    /// Days artifacts are kept in the object store, or -1 to keep them. Upstream:
    /// ARTIFACT_RETENTION_DAYS. [default: -1]
    #[arg(long, env = "KFPD_ARTIFACT_RETENTION_DAYS", allow_hyphen_values = true)]
    pub artifact_retention_days: Option<String>,
    /// Days finished runs are kept, or -1 to keep them; older ones are deleted with
    /// their tasks, artifacts and logs. [default: -1]
    #[arg(long, env = "KFPD_RUN_RETENTION_DAYS", allow_hyphen_values = true)]
    pub run_retention_days: Option<String>,
    /// How many runs of each experiment are kept (the newest by creation), or -1 for
    /// all; older finished ones are deleted like expired runs. [default: -1]
    #[arg(
        long,
        env = "KFPD_RUN_RETENTION_PER_EXPERIMENT",
        allow_hyphen_values = true
    )]
    pub run_retention_per_experiment: Option<String>,
    /// How often `kfpd serve` applies the retention settings (`1h`, `10m`).
    /// [default: 1h]
    #[arg(long, env = "KFPD_RETENTION_INTERVAL")]
    pub retention_interval: Option<String>,
    /// Identity providers and authorizer of multi-user mode (auth.rs).
    #[command(flatten)]
    pub auth: crate::auth::AuthArgs,
    /// Before serving, bring over what changed in this upstream KFP database
    /// (`mysql://…/mlpipeline` or `postgres://…/mlpipeline?schema=…`), as
    /// `kfpd adopt --from` does (docs/upgrade.md). [default: none]
    #[arg(long, env = "KFPD_ADOPT_FROM", value_name = "URL")]
    pub adopt_from: Option<String>,
}

/// The same settings as they may appear in the config file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileSettings {
    http_addr: Option<SocketAddr>,
    grpc_addr: Option<String>,
    grpc_max_message_bytes: Option<usize>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    db_driver: Option<String>,
    db_host: Option<String>,
    db_port: Option<u16>,
    db_user: Option<String>,
    db_password: Option<String>,
    db_name: Option<String>,
    db_params: Option<String>,
    db_conn_max_lifetime: Option<String>,
    db_init_timeout: Option<String>,
    db_busy_timeout: Option<String>,
    namespace: Option<String>,
    multi_user: Option<bool>,
    user_header: Option<String>,
    user_prefix: Option<String>,
    trusted_proxies: Option<Vec<String>>,
    policy_file: Option<PathBuf>,
    default_service_account: Option<String>,
    max_body_bytes: Option<usize>,
    max_connections: Option<usize>,
    header_read_timeout: Option<String>,
    idle_timeout: Option<String>,
    body_read_timeout: Option<String>,
    min_body_rate: Option<u64>,
    max_parallel_tasks: Option<usize>,
    driver_patience: Option<String>,
    executor: Option<String>,
    argo_version: Option<String>,
    agent: Option<String>,
    workflow_ttl: Option<String>,
    agent_reconcile_grace: Option<String>,
    agent_namespaces: Option<String>,
    workflow_server_host: Option<String>,
    scheduler: Option<String>,
    cache_enabled: Option<bool>,
    default_cache_staleness: Option<String>,
    maximum_cache_staleness: Option<String>,
    kfp_package: Option<String>,
    allowed_pipeline_roots: Option<Vec<String>>,
    log_format: Option<String>,
    kfpd_image: Option<String>,
    artifact_secret: Option<String>,
    create_bucket: Option<bool>,
    artifact_retention_days: Option<String>,
    run_retention_days: Option<String>,
    run_retention_per_experiment: Option<String>,
    retention_interval: Option<String>,
    // Multi-user mode's identity providers and authorizer (auth.rs).
    pub(crate) oidc_issuer: Option<String>,
    pub(crate) oidc_audience: Option<Vec<String>>,
    pub(crate) oidc_username_claim: Option<String>,
    pub(crate) oidc_username_prefix: Option<String>,
    pub(crate) oidc_groups_claim: Option<String>,
    pub(crate) oidc_groups_prefix: Option<String>,
    pub(crate) token_review: Option<String>,
    pub(crate) authorizer: Option<String>,
    pub(crate) authz_cache_ttl: Option<String>,
    adopt_from: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    Sqlite,
    Postgres,
    Mysql,
}

/// Where the database is, with the parts needed for log lines that do not leak
/// the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Database {
    pub driver: Driver,
    pub url: String,
    /// `host:port` (or the SQLite file) for messages.
    pub location: String,
    pub user: String,
}

impl Database {
    /// The Secret upstream's manifests take this driver's user and password from,
    /// for messages about refused credentials.
    pub fn credentials_secret(&self) -> &'static str {
        match self.driver {
            Driver::Postgres => "postgres-secret-extended",
            _ => "mysql-secret",
        }
    }
}

/// Resolved settings of `kfpd serve`.
#[derive(Clone, Debug)]
pub struct Config {
    pub http_addr: SocketAddr,
    /// `None`: no gRPC listener (`grpc_addr = "off"`).
    pub grpc_addr: Option<SocketAddr>,
    pub grpc_max_message_bytes: usize,
    pub data_dir: PathBuf,
    pub database: Database,
    pub conn_max_lifetime: Duration,
    pub init_timeout: Duration,
    /// SQLite's busy timeout: the longest a writer waits for the write lock.
    pub busy_timeout: Duration,
    pub namespace: String,
    pub multi_user: bool,
    /// Who may call and what they may do in multi-user mode.
    pub access: AccessSettings,
    pub default_service_account: String,
    pub max_body_bytes: usize,
    /// Connection cap and timeouts of both listeners.
    pub connections: crate::connections::Limits,
    pub max_parallel_tasks: usize,
    /// How long a driver request waits for upstream tasks it has not seen end.
    pub driver_patience: Duration,
    /// Whether `kfpd serve` fires recurring runs itself.
    pub scheduler: bool,
    /// Whether this server runs pipelines itself.
    pub local_executor: bool,
    /// Set with `--executor argo`: runs are submitted as Argo Workflows.
    pub argo: Option<ArgoSettings>,
    /// Task caching: on or off for the whole server, and staleness limits.
    pub cache: kfpd_engine::CacheOptions,
    /// Replaces the kfp pin of lightweight components' pip preambles.
    pub kfp_package: Option<String>,
    /// Pipeline roots runs may name (and what lies under them); empty: any root the
    /// artifact store can serve.
    pub allowed_pipeline_roots: Vec<String>,
    pub log_format: crate::logging::LogFormat,
    /// Image workflow pods take kfpd from.
    pub kfpd_image: String,
    /// Secret whose keys workflow pods get as environment (object store credentials).
    pub artifact_secret: String,
    /// Create a missing object store bucket at start.
    pub create_bucket: bool,
    /// Days artifacts are kept; `None`: forever (upstream's -1).
    pub artifact_retention_days: Option<u32>,
    /// What retention deletes (artifacts, and runs by age or count).
    pub retention: crate::retention::Policy,
    /// How often `kfpd serve` runs a retention pass.
    pub retention_interval: Duration,
    /// Identity providers and authorizer of multi-user mode.
    pub auth: crate::auth::AuthSettings,
    /// An upstream KFP database `kfpd serve` adopts from before serving.
    pub adopt_from: Option<String>,
}

/// How multi-user mode learns who is calling and decides what they may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessSettings {
    pub user_header: String,
    pub user_prefix: String,
    pub trusted_proxies: Vec<kfpd_auth::Cidr>,
    pub policy_file: Option<PathBuf>,
}

/// The settings of `--executor argo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgoSettings {
    pub version: String,
    /// Whether the persistence agent loop runs in this process.
    pub agent: bool,
    pub workflow_ttl: Duration,
    pub reconcile_grace: Duration,
    /// Where the agent loop watches Workflows.
    pub agent_watch: kfpd_cluster::agent::Watch,
    /// Host name of this server as pods reach it.
    pub server_host: String,
}

/// The image workflow pods run kfpd from unless configured.
pub const DEFAULT_KFPD_IMAGE: &str = "ghcr.io/kfpd/kfpd:latest";

/// Upstream's Secret with the object store keys `accesskey` and `secretkey`.
pub const DEFAULT_ARTIFACT_SECRET: &str = "mlpipeline-minio-artifact";

/// Task processes running at once unless configured.
pub const DEFAULT_MAX_PARALLEL_TASKS: usize = 64;

/// The maximum size of an uploaded pipeline package, as upstream.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 << 20;

/// Default gRPC message limit: twice the largest package upload, so that any
/// pipeline version that could be stored can also be sent back over gRPC.
pub const DEFAULT_GRPC_MAX_MESSAGE_BYTES: usize = 64 << 20;

/// The `grpc_addr` value that turns the gRPC listener off.
pub const GRPC_OFF: &str = "off";

impl Config {
    /// Resolves the settings from flags, the process environment and the config file.
    pub fn load(args: &ServeArgs) -> Result<Config, Error> {
        Config::resolve(args, &|name| std::env::var(name).ok())
    }

    /// As [`Config::load`] with an explicit environment, for tests.
    pub fn resolve(
        args: &ServeArgs,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, Error> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let env_nonempty = |name: &str| env(name).filter(|value| !value.trim().is_empty());

        let http_addr = args
            .http_addr
            .or(file.http_addr)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8888)));
        let grpc_addr_text = args
            .grpc_addr
            .clone()
            .or(file.grpc_addr.clone())
            // An empty value (`KFPD_GRPC_ADDR=`) counts as not set, like the
            // upstream variables; only `off` turns gRPC off.
            .filter(|text| !text.trim().is_empty());
        let grpc_addr = match grpc_addr_text {
            None => Some(SocketAddr::from(([127, 0, 0, 1], 8887))),
            Some(text) => parse_grpc_addr(&text)?,
        };
        let grpc_max_message_bytes = args
            .grpc_max_message_bytes
            .or(file.grpc_max_message_bytes)
            .unwrap_or(DEFAULT_GRPC_MAX_MESSAGE_BYTES);
        if grpc_max_message_bytes == 0 {
            return Err(Error::Invalid {
                key: "grpc_max_message_bytes",
                message: "must be greater than 0".into(),
            });
        }
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("kfpd-data"));

        let database = resolve_database(args, &file, &data_dir, &env_nonempty)?;

        let conn_max_lifetime_text = args
            .db_conn_max_lifetime
            .clone()
            .or_else(|| env_nonempty("DBCONFIG_CONMAXLIFETIME"))
            .or(file.db_conn_max_lifetime.clone())
            .unwrap_or_else(|| "120s".to_string());
        let conn_max_lifetime =
            parse_duration(&conn_max_lifetime_text).map_err(|message| Error::Invalid {
                key: "db_conn_max_lifetime",
                message,
            })?;
        let init_timeout_text = args
            .db_init_timeout
            .clone()
            .or_else(|| env_nonempty("INITCONNECTIONTIMEOUT"))
            .or(file.db_init_timeout.clone())
            .unwrap_or_else(|| "6m".to_string());
        let init_timeout =
            parse_duration(&init_timeout_text).map_err(|message| Error::Invalid {
                key: "db_init_timeout",
                message,
            })?;
        let busy_timeout_text = args
            .db_busy_timeout
            .clone()
            .or(file.db_busy_timeout.clone())
            .unwrap_or_else(|| "10s".to_string());
        let busy_timeout =
            parse_duration(&busy_timeout_text).map_err(|message| Error::Invalid {
                key: "db_busy_timeout",
                message,
            })?;

        let multi_user = match args.multi_user {
            Some(value) => value,
            None => match env_nonempty("MULTIUSER") {
                Some(text) => parse_bool(&text).map_err(|message| Error::Invalid {
                    key: "multi_user",
                    message,
                })?,
                None => file.multi_user.unwrap_or(false),
            },
        };
        let access = resolve_access(args, &file, &env_nonempty)?;
        let default_service_account = args
            .default_service_account
            .clone()
            .or_else(|| env_nonempty("DEFAULTPIPELINERUNNERSERVICEACCOUNT"))
            .or(file.default_service_account.clone())
            .unwrap_or_else(|| default_runner(multi_user).to_string());
        let max_body_bytes = args
            .max_body_bytes
            .or(file.max_body_bytes)
            .unwrap_or(DEFAULT_MAX_BODY_BYTES);
        let connections = resolve_connection_limits(args, &file)?;

        let max_parallel_tasks = args
            .max_parallel_tasks
            .or(file.max_parallel_tasks)
            .unwrap_or(DEFAULT_MAX_PARALLEL_TASKS)
            .max(1);
        let patience_text = args
            .driver_patience
            .clone()
            .or(file.driver_patience.clone())
            .unwrap_or_else(|| "30s".to_string());
        let driver_patience = parse_duration(&patience_text).map_err(|message| Error::Invalid {
            key: "driver_patience",
            message,
        })?;

        let executor = args
            .executor
            .clone()
            .or(file.executor.clone())
            .unwrap_or_else(|| "local".to_string());
        let (local_executor, argo_executor) = match executor.trim().to_lowercase().as_str() {
            "local" => (true, false),
            "argo" => (false, true),
            "none" | "off" => (false, false),
            other => {
                return Err(Error::Invalid {
                    key: "executor",
                    message: format!("{other:?} is not local, argo or none"),
                })
            }
        };
        let namespace = args
            .namespace
            .clone()
            .or_else(|| env_nonempty("POD_NAMESPACE"))
            .or(file.namespace.clone())
            .unwrap_or_else(|| "kubeflow".to_string());
        let argo = argo_executor
            .then(|| resolve_argo(args, &file, &namespace))
            .transpose()?;

        let cache = resolve_cache(args, &file, &env_nonempty)?;
        let kfp_package = args
            .kfp_package
            .clone()
            .or(file.kfp_package.clone())
            .map(|text| parse_kfp_package(&text))
            .transpose()?
            .flatten();

        let scheduler_text = args
            .scheduler
            .clone()
            .or(file.scheduler.clone())
            .unwrap_or_else(|| "on".to_string());
        let scheduler = match scheduler_text.trim().to_lowercase().as_str() {
            "on" | "true" | "1" => true,
            "off" | "false" | "0" => false,
            other => {
                return Err(Error::Invalid {
                    key: "scheduler",
                    message: format!("{other:?} is not on or off"),
                })
            }
        };

        let allowed_pipeline_roots: Vec<String> = args
            .allowed_pipeline_roots
            .clone()
            .or(file.allowed_pipeline_roots.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|root| root.trim().to_string())
            .filter(|root| !root.is_empty())
            .collect();
        let log_format = match args.log_format.clone().or(file.log_format.clone()) {
            None => crate::logging::LogFormat::default(),
            Some(text) => text.parse().map_err(|message| Error::Invalid {
                key: "log_format",
                message,
            })?,
        };

        let kfpd_image = resolve_kfpd_image(args, &file, &env_nonempty)?;
        let artifact_secret = args
            .artifact_secret
            .clone()
            .or(file.artifact_secret.clone())
            .map(|name| name.trim().to_string())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| DEFAULT_ARTIFACT_SECRET.to_string());
        let create_bucket = args.create_bucket.or(file.create_bucket).unwrap_or(true);
        let artifact_retention_days = args
            .artifact_retention_days
            .clone()
            .or_else(|| env_nonempty("ARTIFACT_RETENTION_DAYS"))
            .or(file.artifact_retention_days.clone())
            .map(|text| parse_retention_days("artifact_retention_days", &text))
            .transpose()?
            .flatten();
        let run_retention_days = args
            .run_retention_days
            .clone()
            .or(file.run_retention_days.clone())
            .map(|text| parse_retention_days("run_retention_days", &text))
            .transpose()?
            .flatten();
        let runs_per_experiment = args
            .run_retention_per_experiment
            .clone()
            .or(file.run_retention_per_experiment.clone())
            .map(|text| parse_retention_days("run_retention_per_experiment", &text))
            .transpose()?
            .flatten()
            .map(u64::from);
        let retention_interval_text = args
            .retention_interval
            .clone()
            .or(file.retention_interval.clone())
            .unwrap_or_else(|| "1h".to_string());
        let retention_interval = parse_duration(&retention_interval_text)
            .ok()
            .filter(|interval| !interval.is_zero())
            .ok_or_else(|| Error::Invalid {
                key: "retention_interval",
                message: format!(
                    "{retention_interval_text:?} is not a duration above zero such as 1h or 10m"
                ),
            })?;
        let retention = crate::retention::Policy {
            artifact_days: artifact_retention_days,
            run_days: run_retention_days,
            runs_per_experiment,
        };
        // A cache hit hands out an earlier run's artifacts; none that retention is
        // about to delete (an hour's margin for the run that takes them to link them).
        let mut cache = cache;
        let shortest_days = [artifact_retention_days, run_retention_days]
            .into_iter()
            .flatten()
            .min();
        if let Some(days) = shortest_days {
            let limit = Duration::from_secs(u64::from(days) * 86_400 - 3_600);
            cache.maximum_staleness = Some(match cache.maximum_staleness {
                Some(maximum) => maximum.min(limit),
                None => limit,
            });
        }

        let auth = crate::auth::resolve(&args.auth, &file, env)?;

        let adopt_from = args
            .adopt_from
            .clone()
            .or(file.adopt_from.clone())
            .filter(|url| !url.trim().is_empty());
        Ok(Config {
            auth,
            adopt_from,
            retention,
            retention_interval,
            kfpd_image,
            artifact_secret,
            create_bucket,
            artifact_retention_days,
            kfp_package,
            allowed_pipeline_roots,
            log_format,
            max_parallel_tasks,
            driver_patience,
            scheduler,
            local_executor,
            argo,
            cache,
            http_addr,
            grpc_addr,
            grpc_max_message_bytes,
            data_dir,
            database,
            conn_max_lifetime,
            init_timeout,
            busy_timeout,
            namespace,
            multi_user,
            access,
            default_service_account,
            max_body_bytes,
            connections,
        })
    }
}

/// The connection cap and timeouts; every timeout must be above zero.
fn resolve_connection_limits(
    args: &ServeArgs,
    file: &FileSettings,
) -> Result<crate::connections::Limits, Error> {
    let defaults = crate::connections::DEFAULT_LIMITS;
    let duration = |key: &'static str,
                    flag: &Option<String>,
                    from_file: &Option<String>,
                    default: Duration| {
        let Some(text) = flag.clone().or(from_file.clone()) else {
            return Ok(default);
        };
        let value = parse_duration(&text).map_err(|message| Error::Invalid { key, message })?;
        if value.is_zero() {
            return Err(Error::Invalid {
                key,
                message: "must be greater than 0".into(),
            });
        }
        Ok(value)
    };
    let max_connections = args
        .max_connections
        .or(file.max_connections)
        .unwrap_or(defaults.max_connections);
    if max_connections == 0 {
        return Err(Error::Invalid {
            key: "max_connections",
            message: "must be greater than 0".into(),
        });
    }
    Ok(crate::connections::Limits {
        max_connections,
        header_read_timeout: duration(
            "header_read_timeout",
            &args.header_read_timeout,
            &file.header_read_timeout,
            defaults.header_read_timeout,
        )?,
        idle_timeout: duration(
            "idle_timeout",
            &args.idle_timeout,
            &file.idle_timeout,
            defaults.idle_timeout,
        )?,
        body_read_timeout: duration(
            "body_read_timeout",
            &args.body_read_timeout,
            &file.body_read_timeout,
            defaults.body_read_timeout,
        )?,
        min_body_rate: args
            .min_body_rate
            .or(file.min_body_rate)
            .unwrap_or(defaults.min_body_rate),
    })
}

/// The identity settings of multi-user mode (checked also when it is off, so a
/// typo does not wait for the day the mode is turned on).
fn resolve_access(
    args: &ServeArgs,
    file: &FileSettings,
    env_nonempty: &dyn Fn(&str) -> Option<String>,
) -> Result<AccessSettings, Error> {
    let user_header = args
        .user_header
        .clone()
        .or_else(|| env_nonempty("KUBEFLOW_USERID_HEADER"))
        .or(file.user_header.clone())
        .map(|text| text.trim().to_string())
        .filter(|text| !text.is_empty())
        .unwrap_or_else(|| kfpd_auth::header::DEFAULT_HEADER.to_string());
    if http::HeaderName::from_bytes(user_header.to_ascii_lowercase().as_bytes()).is_err() {
        return Err(Error::Invalid {
            key: "user_header",
            message: format!("{user_header:?} is not an HTTP header name"),
        });
    }
    let user_prefix = args
        .user_prefix
        .clone()
        .or_else(|| env_nonempty("KUBEFLOW_USERID_PREFIX"))
        .or(file.user_prefix.clone())
        .unwrap_or_default();
    let trusted_proxies = args
        .trusted_proxies
        .clone()
        .or(file.trusted_proxies.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|text| !text.trim().is_empty())
        .map(|text| {
            text.parse::<kfpd_auth::Cidr>()
                .map_err(|error| Error::Invalid {
                    key: "trusted_proxies",
                    message: error.to_string(),
                })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let policy_file = args.policy_file.clone().or(file.policy_file.clone());
    Ok(AccessSettings {
        user_header,
        user_prefix,
        trusted_proxies,
        policy_file,
    })
}

/// The argo executor's settings; each is checked even where it has a default.
fn resolve_argo(
    args: &ServeArgs,
    file: &FileSettings,
    namespace: &str,
) -> Result<ArgoSettings, Error> {
    let version = args
        .argo_version
        .clone()
        .or(file.argo_version.clone())
        .map(|text| text.trim().to_string())
        .filter(|text| !text.is_empty())
        .unwrap_or_else(|| "3.7".to_string());
    if !["3.7", "4.0"].contains(&version.as_str()) {
        return Err(Error::Invalid {
            key: "argo_version",
            message: format!("{version:?} is not 3.7 or 4.0"),
        });
    }
    let agent_text = args
        .agent
        .clone()
        .or(file.agent.clone())
        .unwrap_or_else(|| "on".to_string());
    let agent = match agent_text.trim().to_lowercase().as_str() {
        "on" | "true" | "1" => true,
        "off" | "false" | "0" => false,
        other => {
            return Err(Error::Invalid {
                key: "agent",
                message: format!("{other:?} is not on or off"),
            })
        }
    };
    let ttl_text = args
        .workflow_ttl
        .clone()
        .or(file.workflow_ttl.clone())
        .unwrap_or_else(|| "24h".to_string());
    let workflow_ttl = parse_duration(&ttl_text).map_err(|message| Error::Invalid {
        key: "workflow_ttl",
        message,
    })?;
    let grace_text = args
        .agent_reconcile_grace
        .clone()
        .or(file.agent_reconcile_grace.clone())
        .unwrap_or_else(|| "120s".to_string());
    let reconcile_grace = parse_duration(&grace_text).map_err(|message| Error::Invalid {
        key: "agent_reconcile_grace",
        message,
    })?;
    let watch_text = args
        .agent_namespaces
        .clone()
        .or(file.agent_namespaces.clone())
        .unwrap_or_default();
    let agent_watch =
        kfpd_cluster::agent::Watch::parse(&watch_text, namespace).map_err(|message| {
            Error::Invalid {
                key: "agent_namespaces",
                message,
            }
        })?;
    let server_host = args
        .workflow_server_host
        .clone()
        .or(file.workflow_server_host.clone())
        .map(|text| text.trim().to_string())
        .filter(|text| !text.is_empty())
        .unwrap_or_else(|| format!("ml-pipeline.{namespace}.svc.cluster.local"));
    Ok(ArgoSettings {
        version,
        agent,
        workflow_ttl,
        reconcile_grace,
        agent_watch,
        server_host,
    })
}

/// Cache settings: flag, `KFPD_*` variable, upstream's variable, config file.
fn resolve_cache(
    args: &ServeArgs,
    file: &FileSettings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<kfpd_engine::CacheOptions, Error> {
    let enabled = match args.cache_enabled {
        Some(value) => value,
        None => match env("CACHEENABLED") {
            Some(text) => parse_bool(&text).map_err(|message| Error::Invalid {
                key: "cache_enabled",
                message,
            })?,
            None => file.cache_enabled.unwrap_or(true),
        },
    };
    let staleness =
        |key: &'static str, flag: &Option<String>, upstream: &str, from_file: &Option<String>| {
            let text = flag
                .clone()
                .or_else(|| env(upstream))
                .or(from_file.clone())
                .filter(|text| !text.trim().is_empty());
            text.map(|text| {
                kfpd_engine::parse_iso8601_duration(&text).map_err(|error| Error::Invalid {
                    key,
                    message: error.to_string(),
                })
            })
            .transpose()
        };
    Ok(kfpd_engine::CacheOptions {
        enabled,
        default_staleness: staleness(
            "default_cache_staleness",
            &args.default_cache_staleness,
            "DEFAULT_CACHE_STALENESS",
            &file.default_cache_staleness,
        )?,
        maximum_staleness: staleness(
            "maximum_cache_staleness",
            &args.maximum_cache_staleness,
            "MAXIMUM_CACHE_STALENESS",
            &file.maximum_cache_staleness,
        )?,
    })
}

/// The kfpd image for workflow pods. Upstream's deployment names its own launcher
/// and driver images in the same variables; those hold no kfpd, and a run would
/// only fail later in its first pod, so they are refused here.
fn resolve_kfpd_image(
    args: &ServeArgs,
    file: &FileSettings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Error> {
    let candidates = [
        ("kfpd_image", args.kfpd_image.clone()),
        ("V2_LAUNCHER_IMAGE", env("V2_LAUNCHER_IMAGE")),
        ("V2_DRIVER_IMAGE", env("V2_DRIVER_IMAGE")),
        ("kfpd_image", file.kfpd_image.clone()),
    ];
    let Some((key, image)) = candidates.into_iter().find_map(|(key, value)| {
        Some((key, value?.trim().to_string())).filter(|(_, v)| !v.is_empty())
    }) else {
        return Ok(DEFAULT_KFPD_IMAGE.to_string());
    };
    let repository = image.split('@').next().unwrap_or_default();
    let name = repository.rsplit('/').next().unwrap_or_default();
    let name = name.split(':').next().unwrap_or_default();
    if name == "kfp-launcher" || name == "kfp-driver" {
        return Err(Error::Invalid {
            key: "kfpd_image",
            message: format!(
                "{key} is {image:?}, upstream's {name} image, which holds no kfpd: set {key} (or KFPD_IMAGE) to the image kfpd runs from"
            ),
        });
    }
    Ok(image)
}

/// Upstream's `ARTIFACT_RETENTION_DAYS`: a whole number of days, `-1` (or empty)
/// for no expiry. Object store lifecycle rules count whole days from 1. The run
/// retention settings take the same form (days, or a count of runs).
fn parse_retention_days(key: &'static str, text: &str) -> Result<Option<u32>, Error> {
    let text = text.trim();
    if text.is_empty() || text == "-1" {
        return Ok(None);
    }
    let unit = if key == "run_retention_per_experiment" {
        "a number of runs"
    } else {
        "a number of days"
    };
    match text.parse::<u32>() {
        Ok(days) if days >= 1 => Ok(Some(days)),
        _ => Err(Error::Invalid {
            key,
            message: format!("{text:?} is not {unit} (1 or more) or -1 to keep everything"),
        }),
    }
}

/// `off` (any case) disables gRPC; anything else must be `host:port`.
fn parse_grpc_addr(text: &str) -> Result<Option<SocketAddr>, Error> {
    let text = text.trim();
    if text.eq_ignore_ascii_case(GRPC_OFF) {
        return Ok(None);
    }
    text.parse::<SocketAddr>()
        .map(Some)
        .map_err(|_| Error::Invalid {
            key: "grpc_addr",
            message: format!("{text:?} is neither an address such as 127.0.0.1:8887 nor \"off\""),
        })
}

fn read_file(path: &Path) -> Result<FileSettings, Error> {
    let text = std::fs::read_to_string(path).map_err(|error| Error::File {
        path: path.display().to_string(),
        message: error.to_string(),
    })?;
    toml::from_str(&text).map_err(|error| Error::File {
        path: path.display().to_string(),
        message: error.to_string(),
    })
}

fn parse_driver(text: &str) -> Result<Driver, Error> {
    match text.trim().to_lowercase().as_str() {
        "sqlite" | "sqlite3" => Ok(Driver::Sqlite),
        "postgres" | "postgresql" | "pgx" | "pg" => Ok(Driver::Postgres),
        "mysql" | "mariadb" => Ok(Driver::Mysql),
        other => Err(Error::Invalid {
            key: "db_driver",
            message: format!("unknown database driver {other:?}: use sqlite, postgres or mysql"),
        }),
    }
}

fn resolve_database(
    args: &ServeArgs,
    file: &FileSettings,
    data_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Database, Error> {
    if let Some(url) = args.database_url.clone().or(file.database_url.clone()) {
        return database_from_url(&url);
    }
    let driver_text = args
        .db_driver
        .clone()
        .or_else(|| env("DBDRIVERNAME"))
        // What upstream's manifests set from the ConfigMap's `dbType`.
        .or_else(|| env("DB_DRIVER_NAME"))
        .or_else(|| env("DBTYPE"))
        .or_else(|| env("dbType"))
        .or(file.db_driver.clone());
    let driver = match driver_text {
        Some(text) => parse_driver(&text)?,
        // Upstream's manifests set only the DBCONFIG_* variables, for MySQL.
        None if env("DBCONFIG_MYSQLCONFIG_HOST").is_some() || env("DBCONFIG_HOST").is_some() => {
            Driver::Mysql
        }
        None if env("DBCONFIG_POSTGRESQLCONFIG_HOST").is_some() => Driver::Postgres,
        None => Driver::Sqlite,
    };
    if driver == Driver::Sqlite {
        let path = data_dir.join("kfpd.db");
        return Ok(Database {
            driver,
            url: format!("sqlite://{}", path.display()),
            location: path.display().to_string(),
            user: String::new(),
        });
    }
    let prefix = match driver {
        Driver::Postgres => "DBCONFIG_POSTGRESQLCONFIG_",
        _ => "DBCONFIG_MYSQLCONFIG_",
    };
    let pick = |flag: &Option<String>, suffix: &str, from_file: &Option<String>| {
        flag.clone()
            .or_else(|| env(&format!("{prefix}{suffix}")))
            .or_else(|| env(&format!("DBCONFIG_{suffix}")))
            .or(from_file.clone())
    };
    let (default_host, default_port) = match driver {
        Driver::Postgres => ("postgresql", 5432),
        _ => ("mysql", 3306),
    };
    let host = pick(&args.db_host, "HOST", &file.db_host).unwrap_or_else(|| default_host.into());
    let port_text = pick(
        &args.db_port.map(|p| p.to_string()),
        "PORT",
        &file.db_port.map(|p| p.to_string()),
    );
    let port = match port_text {
        Some(text) => text.trim().parse::<u16>().map_err(|_| Error::Invalid {
            key: "db_port",
            message: format!("{text:?} is not a port number"),
        })?,
        None => default_port,
    };
    let user = pick(&args.db_user, "USER", &file.db_user).unwrap_or_else(|| "root".into());
    let password = pick(&args.db_password, "PASSWORD", &file.db_password).unwrap_or_default();
    let name = pick(&args.db_name, "DBNAME", &file.db_name).unwrap_or_else(|| "mlpipeline".into());
    let params = match args.db_params.clone().or(file.db_params.clone()) {
        Some(params) => params,
        None => env("DBCONFIG_MYSQLCONFIG_EXTRAPARAMS")
            .map(|json| extra_params(&json))
            .transpose()?
            .unwrap_or_default(),
    };
    // Upstream sets MySQL's group_concat_max_len for its own GROUP_CONCAT queries;
    // kfpd's SQL has none, so the value is only checked.
    if let Some(text) = env("DBCONFIG_MYSQLCONFIG_GROUPCONCATMAXLEN") {
        text.trim().parse::<u64>().map_err(|_| Error::Invalid {
            key: "DBCONFIG_MYSQLCONFIG_GROUPCONCATMAXLEN",
            message: format!("{text:?} is not a number"),
        })?;
    }
    let scheme = match driver {
        Driver::Postgres => "postgres",
        _ => "mysql",
    };
    let credentials = if password.is_empty() {
        encode(&user)
    } else {
        format!("{}:{}", encode(&user), encode(&password))
    };
    let query = if params.is_empty() {
        String::new()
    } else {
        format!("?{params}")
    };
    Ok(Database {
        driver,
        url: format!("{scheme}://{credentials}@{host}:{port}/{name}{query}"),
        location: format!("{host}:{port}"),
        user,
    })
}

fn database_from_url(url: &str) -> Result<Database, Error> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| Error::Invalid {
        key: "database_url",
        message: "expected scheme://…".into(),
    })?;
    let driver = parse_driver(scheme).map_err(|_| Error::Invalid {
        key: "database_url",
        message: format!("unsupported scheme {scheme:?}: use sqlite, postgres or mysql"),
    })?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (user, location) = match authority.rsplit_once('@') {
        Some((credentials, host)) => (
            credentials
                .split(':')
                .next()
                .unwrap_or_default()
                .to_string(),
            host.to_string(),
        ),
        None => (String::new(), authority.to_string()),
    };
    let location = if driver == Driver::Sqlite {
        rest.to_string()
    } else {
        location
    };
    Ok(Database {
        driver,
        url: url.to_string(),
        location,
        user,
    })
}

/// Upstream's `ExtraParams` is a JSON object of DSN parameters.
fn extra_params(json: &str) -> Result<String, Error> {
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(json).map_err(|error| Error::Invalid {
            key: "DBCONFIG_MYSQLCONFIG_EXTRAPARAMS",
            message: format!("expected a JSON object: {error}"),
        })?;
    let pairs: Vec<String> = object
        .iter()
        .map(|(key, value)| {
            let text = match value {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            format!("{}={}", encode(key), encode(&text))
        })
        .collect();
    Ok(pairs.join("&"))
}

/// Percent-encodes everything but unreserved URL characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        let unreserved = byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~');
        if unreserved {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A pip requirement to put in a shell-quoted preamble: no quotes or control
/// characters, which could end the quoting. Empty means unset.
pub(crate) fn parse_kfp_package(text: &str) -> Result<Option<String>, Error> {
    let requirement = text.trim();
    if requirement.is_empty() {
        return Ok(None);
    }
    if requirement
        .chars()
        .any(|ch| ch == '\'' || ch == '"' || ch == '\\' || ch.is_control())
    {
        return Err(Error::Invalid {
            key: "kfp_package",
            message: format!(
                "{requirement:?} must be a pip requirement without quotes, backslashes or control characters"
            ),
        });
    }
    Ok(Some(requirement.to_string()))
}

/// The service account of runs that name none: in multi-user mode the one
/// Kubeflow's profile controller makes in every profile namespace (upstream's
/// multi-user install sets DEFAULTPIPELINERUNNERSERVICEACCOUNT to it).
fn default_runner(multi_user: bool) -> &'static str {
    if multi_user {
        "default-editor"
    } else {
        "pipeline-runner"
    }
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        other => Err(format!("{other:?} is not true or false")),
    }
}

/// Go-style durations (`120s`, `6m`, `1h30m`, `500ms`) and plain seconds (`120`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total = Duration::ZERO;
    let mut number = String::new();
    let mut chars = text.chars().peekable();
    let mut saw_unit = false;
    while let Some(ch) = chars.next() {
        if ch.is_ascii_digit() || ch == '.' {
            number.push(ch);
            continue;
        }
        let mut unit = ch.to_string();
        if ch == 'm' && chars.peek() == Some(&'s') {
            chars.next();
            unit = "ms".into();
        }
        let value: f64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a duration such as 120s or 6m"))?;
        let seconds = match unit.as_str() {
            "h" => value * 3600.0,
            "m" => value * 60.0,
            "s" => value,
            "ms" => value / 1000.0,
            _ => {
                return Err(format!(
                    "{text:?} has unknown unit {unit:?}: use h, m, s or ms"
                ))
            }
        };
        total += Duration::from_secs_f64(seconds);
        number.clear();
        saw_unit = true;
    }
    if !number.is_empty() || !saw_unit {
        return Err(format!("{text:?} is not a duration such as 120s or 6m"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(args: ServeArgs, vars: &[(&str, &str)]) -> Config {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::resolve(&args, &|name| vars.get(name).cloned()).unwrap()
    }

    #[test]
    fn identity_settings_come_from_upstreams_variables_and_flags() {
        let config = resolve(ServeArgs::default(), &[]);
        assert_eq!(config.access.user_header, "kubeflow-userid");
        assert_eq!(config.access.user_prefix, "");
        assert!(config.access.trusted_proxies.is_empty());
        let config = resolve(
            ServeArgs::default(),
            &[
                ("KUBEFLOW_USERID_HEADER", "x-goog-authenticated-user-email"),
                ("KUBEFLOW_USERID_PREFIX", "accounts.google.com:"),
            ],
        );
        assert_eq!(config.access.user_header, "x-goog-authenticated-user-email");
        assert_eq!(config.access.user_prefix, "accounts.google.com:");
        let args = ServeArgs {
            user_header: Some("x-user".into()),
            trusted_proxies: Some(vec!["10.0.0.0/8".into(), " 127.0.0.1 ".into()]),
            policy_file: Some(PathBuf::from("policy.yaml")),
            ..ServeArgs::default()
        };
        let config = resolve(args, &[("KUBEFLOW_USERID_HEADER", "ignored")]);
        assert_eq!(config.access.user_header, "x-user");
        assert_eq!(config.access.trusted_proxies.len(), 2);
        assert_eq!(
            config.access.policy_file,
            Some(PathBuf::from("policy.yaml"))
        );

        for (args, key) in [
            (
                ServeArgs {
                    trusted_proxies: Some(vec!["10.0.0.0/40".into()]),
                    ..ServeArgs::default()
                },
                "trusted_proxies",
            ),
            (
                ServeArgs {
                    user_header: Some("bad header".into()),
                    ..ServeArgs::default()
                },
                "user_header",
            ),
        ] {
            match Config::resolve(&args, &|_| None) {
                Err(Error::Invalid { key: found, .. }) => assert_eq!(found, key),
                other => panic!("expected invalid {key}, got {other:?}"),
            }
        }
    }

    #[test]
    fn defaults_need_nothing_installed() {
        let config = resolve(ServeArgs::default(), &[]);
        assert_eq!(config.http_addr.to_string(), "127.0.0.1:8888");
        assert_eq!(config.database.driver, Driver::Sqlite);
        assert_eq!(config.database.url, "sqlite://kfpd-data/kfpd.db");
        assert_eq!(config.conn_max_lifetime, Duration::from_secs(120));
        assert_eq!(config.namespace, "kubeflow");
        assert!(!config.multi_user);
    }

    #[test]
    fn connection_limits_from_defaults_file_and_flags() {
        let defaults = resolve(ServeArgs::default(), &[]).connections;
        assert_eq!(defaults, crate::connections::DEFAULT_LIMITS);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kfpd.toml");
        std::fs::write(
            &path,
            "max_connections = 50\nheader_read_timeout = \"5s\"\nidle_timeout = \"1m\"\nbody_read_timeout = \"20s\"\nmin_body_rate = 0\n",
        )
        .unwrap();
        let from_file = resolve(
            ServeArgs {
                config: Some(path.clone()),
                ..ServeArgs::default()
            },
            &[],
        )
        .connections;
        assert_eq!(from_file.max_connections, 50);
        assert_eq!(from_file.header_read_timeout, Duration::from_secs(5));
        assert_eq!(from_file.idle_timeout, Duration::from_secs(60));
        assert_eq!(from_file.body_read_timeout, Duration::from_secs(20));
        assert_eq!(from_file.min_body_rate, 0);

        let flag_wins = resolve(
            ServeArgs {
                config: Some(path),
                max_connections: Some(7),
                idle_timeout: Some("500ms".into()),
                ..ServeArgs::default()
            },
            &[],
        )
        .connections;
        assert_eq!(flag_wins.max_connections, 7);
        assert_eq!(flag_wins.idle_timeout, Duration::from_millis(500));

        for (args, key) in [
            (
                ServeArgs {
                    max_connections: Some(0),
                    ..ServeArgs::default()
                },
                "max_connections",
            ),
            (
                ServeArgs {
                    header_read_timeout: Some("0s".into()),
                    ..ServeArgs::default()
                },
                "header_read_timeout",
            ),
            (
                ServeArgs {
                    body_read_timeout: Some("soon".into()),
                    ..ServeArgs::default()
                },
                "body_read_timeout",
            ),
        ] {
            let error = Config::resolve(&args, &|_| None).unwrap_err();
            assert!(error.to_string().contains(key), "{error}");
        }
    }

    #[test]
    fn upstream_manifest_variables_select_mysql() {
        let config = resolve(
            ServeArgs::default(),
            &[
                ("DBCONFIG_HOST", "mysql.kubeflow"),
                ("DBCONFIG_USER", "kfp"),
                ("DBCONFIG_PASSWORD", "p@ss word"),
                ("DBCONFIG_CONMAXLIFETIME", "2m"),
                ("MULTIUSER", "true"),
                ("POD_NAMESPACE", "ml"),
            ],
        );
        assert_eq!(config.database.driver, Driver::Mysql);
        assert_eq!(
            config.database.url,
            "mysql://kfp:p%40ss%20word@mysql.kubeflow:3306/mlpipeline"
        );
        assert_eq!(config.database.location, "mysql.kubeflow:3306");
        assert_eq!(config.conn_max_lifetime, Duration::from_secs(120));
        assert!(config.multi_user);
        assert_eq!(config.namespace, "ml");
    }

    #[test]
    fn specific_keys_beat_generic_and_flags_beat_env() {
        let config = resolve(
            ServeArgs {
                db_port: Some(6543),
                ..ServeArgs::default()
            },
            &[
                ("DBDRIVERNAME", "pgx"),
                ("DBCONFIG_HOST", "generic"),
                ("DBCONFIG_POSTGRESQLCONFIG_HOST", "pg.internal"),
                ("DBCONFIG_PORT", "1111"),
            ],
        );
        assert_eq!(config.database.driver, Driver::Postgres);
        assert_eq!(
            config.database.url,
            "postgres://root@pg.internal:6543/mlpipeline"
        );
    }

    #[test]
    fn bad_values_name_the_setting() {
        let vars: HashMap<String, String> =
            [("DBDRIVERNAME".to_string(), "oracle".to_string())].into();
        let error =
            Config::resolve(&ServeArgs::default(), &|name| vars.get(name).cloned()).unwrap_err();
        assert!(error.to_string().contains("db_driver"), "{error}");
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn grpc_listener_defaults_and_can_be_turned_off() {
        let config = resolve(ServeArgs::default(), &[]);
        assert_eq!(
            config.grpc_addr.map(|addr| addr.to_string()).as_deref(),
            Some("127.0.0.1:8887")
        );
        assert_eq!(config.grpc_max_message_bytes, 64 << 20);
        let off = |value: &str| ServeArgs {
            grpc_addr: Some(value.into()),
            ..ServeArgs::default()
        };
        assert_eq!(resolve(off("off"), &[]).grpc_addr, None);
        assert_eq!(resolve(off("OFF"), &[]).grpc_addr, None);
        assert!(resolve(off(""), &[]).grpc_addr.is_some());
        let bad = Config::resolve(&off("8887"), &|_| None).unwrap_err();
        assert!(bad.to_string().contains("grpc_addr"), "{bad}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kfpd.toml");
        std::fs::write(
            &path,
            "grpc_addr = \"0.0.0.0:9001\"\ngrpc_max_message_bytes = 1024\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        };
        let config = resolve(args.clone(), &[]);
        assert_eq!(config.grpc_addr.unwrap().to_string(), "0.0.0.0:9001");
        assert_eq!(config.grpc_max_message_bytes, 1024);
        let flag_wins = resolve(
            ServeArgs {
                grpc_addr: Some("off".into()),
                ..args
            },
            &[],
        );
        assert_eq!(flag_wins.grpc_addr, None);
    }

    #[test]
    fn cache_settings_take_upstream_names() {
        let config = resolve(ServeArgs::default(), &[]);
        assert!(config.cache.enabled);
        assert_eq!(config.cache.default_staleness, None);
        let config = resolve(
            ServeArgs::default(),
            &[
                ("CACHEENABLED", "false"),
                ("DEFAULT_CACHE_STALENESS", "P30D"),
                ("MAXIMUM_CACHE_STALENESS", "PT12H"),
            ],
        );
        assert!(!config.cache.enabled);
        assert_eq!(
            config.cache.default_staleness,
            Some(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(
            config.cache.maximum_staleness,
            Some(Duration::from_secs(12 * 3600))
        );
        let flag_wins = resolve(
            ServeArgs {
                cache_enabled: Some(true),
                ..ServeArgs::default()
            },
            &[("CACHEENABLED", "false")],
        );
        assert!(flag_wins.cache.enabled);
        let vars: HashMap<String, String> =
            [("MAXIMUM_CACHE_STALENESS".to_string(), "30 days".to_string())].into();
        let error =
            Config::resolve(&ServeArgs::default(), &|name| vars.get(name).cloned()).unwrap_err();
        assert!(
            error.to_string().contains("maximum_cache_staleness"),
            "{error}"
        );
    }

    #[test]
    fn argo_executor_takes_the_manifests_names() {
        assert_eq!(resolve(ServeArgs::default(), &[]).argo, None);
        let args = ServeArgs {
            executor: Some("argo".into()),
            argo_version: Some("4.0".into()),
            agent: Some("off".into()),
            ..ServeArgs::default()
        };
        let config = resolve(args, &[("POD_NAMESPACE", "ml")]);
        assert!(!config.local_executor);
        let argo = config.argo.expect("argo settings");
        assert_eq!(argo.version, "4.0");
        assert!(!argo.agent);
        assert_eq!(argo.workflow_ttl, Duration::from_secs(86_400));
        assert_eq!(argo.server_host, "ml-pipeline.ml.svc.cluster.local");
        for (key, args) in [
            (
                "argo_version",
                ServeArgs {
                    executor: Some("argo".into()),
                    argo_version: Some("3.6".into()),
                    ..ServeArgs::default()
                },
            ),
            (
                "agent",
                ServeArgs {
                    executor: Some("argo".into()),
                    agent: Some("maybe".into()),
                    ..ServeArgs::default()
                },
            ),
            (
                "workflow_ttl",
                ServeArgs {
                    executor: Some("argo".into()),
                    workflow_ttl: Some("a day".into()),
                    ..ServeArgs::default()
                },
            ),
            (
                "executor",
                ServeArgs {
                    executor: Some("k8s".into()),
                    ..ServeArgs::default()
                },
            ),
        ] {
            let error = Config::resolve(&args, &|_| None).unwrap_err();
            assert!(error.to_string().contains(key), "{key}: {error}");
        }
    }

    #[test]
    fn scheduler_is_on_unless_turned_off() {
        assert!(resolve(ServeArgs::default(), &[]).scheduler);
        for (text, on) in [
            ("off", false),
            ("OFF", false),
            ("false", false),
            ("on", true),
        ] {
            let args = ServeArgs {
                scheduler: Some(text.into()),
                ..ServeArgs::default()
            };
            assert_eq!(resolve(args, &[]).scheduler, on, "{text}");
        }
        let args = ServeArgs {
            scheduler: Some("sometimes".into()),
            ..ServeArgs::default()
        };
        let error = Config::resolve(&args, &|_| None).unwrap_err();
        assert!(error.to_string().contains("scheduler"), "{error}");
    }

    #[test]
    fn kfp_package_is_unset_by_default_and_checked() {
        assert_eq!(resolve(ServeArgs::default(), &[]).kfp_package, None);
        let with = |value: &str| ServeArgs {
            kfp_package: Some(value.into()),
            ..ServeArgs::default()
        };
        assert_eq!(
            resolve(with(" kfp==2.15.0 "), &[]).kfp_package.as_deref(),
            Some("kfp==2.15.0")
        );
        assert_eq!(resolve(with(""), &[]).kfp_package, None);
        for bad in ["kfp==2.15.0' && rm -rf x '", "kfp\nx", "kfp\\"] {
            let error = Config::resolve(&with(bad), &|_| None).unwrap_err();
            assert!(error.to_string().contains("kfp_package"), "{error}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kfpd.toml");
        std::fs::write(&path, "kfp_package = \"kfp==2.15.0\"\n").unwrap();
        let args = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        };
        assert_eq!(
            resolve(args, &[]).kfp_package.as_deref(),
            Some("kfp==2.15.0")
        );
    }

    #[test]
    fn config_file_is_read_and_typos_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kfpd.toml");
        std::fs::write(
            &path,
            "http_addr = \"0.0.0.0:9000\"\ndb_driver = \"postgres\"\ndb_host = \"db\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            ..ServeArgs::default()
        };
        let config = resolve(args.clone(), &[]);
        assert_eq!(config.http_addr.to_string(), "0.0.0.0:9000");
        assert_eq!(config.database.url, "postgres://root@db:5432/mlpipeline");
        std::fs::write(&path, "htp_addr = \"x\"\n").unwrap();
        let error = Config::resolve(&args, &|_| None).unwrap_err();
        assert!(error.to_string().contains("htp_addr"), "{error}");
    }

    #[test]
    fn log_format_and_allowed_roots_from_flag_or_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kfpd.toml");
        std::fs::write(
            &path,
            "log_format = \"json\"\nallowed_pipeline_roots = [\"/data\", \" s3://team/kfp \"]\n",
        )
        .unwrap();
        let from_file = ServeArgs {
            config: Some(path.clone()),
            ..ServeArgs::default()
        };
        let config = resolve(from_file.clone(), &[]);
        assert_eq!(config.log_format, crate::logging::LogFormat::Json);
        assert_eq!(config.allowed_pipeline_roots, ["/data", "s3://team/kfp"]);
        let flags = ServeArgs {
            log_format: Some("text".into()),
            allowed_pipeline_roots: Some(vec!["/srv".into(), "".into()]),
            ..from_file
        };
        let config = resolve(flags, &[]);
        assert_eq!(config.log_format, crate::logging::LogFormat::Text);
        assert_eq!(config.allowed_pipeline_roots, ["/srv"]);
        let default = resolve(ServeArgs::default(), &[]);
        assert_eq!(default.log_format, crate::logging::LogFormat::Text);
        assert!(default.allowed_pipeline_roots.is_empty());
        let bad = ServeArgs {
            log_format: Some("yaml".into()),
            ..ServeArgs::default()
        };
        let error = Config::resolve(&bad, &|_| None).unwrap_err();
        assert!(error.to_string().contains("log_format"), "{error}");
    }

    #[test]
    fn seed_deployment_settings_are_read() {
        let config = resolve(
            ServeArgs::default(),
            &[
                ("DB_DRIVER_NAME", "postgres"),
                ("DBCONFIG_POSTGRESQLCONFIG_HOST", "postgres"),
                ("DBCONFIG_MYSQLCONFIG_GROUPCONCATMAXLEN", "4194304"),
                ("V2_LAUNCHER_IMAGE", "registry.example/kfpd:1.2"),
                ("V2_DRIVER_IMAGE", "registry.example/other:1"),
                ("ARTIFACT_RETENTION_DAYS", "30"),
            ],
        );
        assert_eq!(config.database.driver, Driver::Postgres);
        assert_eq!(
            config.database.credentials_secret(),
            "postgres-secret-extended"
        );
        assert_eq!(config.kfpd_image, "registry.example/kfpd:1.2");
        assert_eq!(config.artifact_retention_days, Some(30));
        assert_eq!(config.artifact_secret, DEFAULT_ARTIFACT_SECRET);
        assert!(config.create_bucket);

        let defaults = resolve(ServeArgs::default(), &[("ARTIFACT_RETENTION_DAYS", "-1")]);
        assert_eq!(defaults.artifact_retention_days, None);
        assert_eq!(defaults.kfpd_image, DEFAULT_KFPD_IMAGE);
        assert_eq!(defaults.database.credentials_secret(), "mysql-secret");
        let driver_only = resolve(
            ServeArgs::default(),
            &[("V2_DRIVER_IMAGE", "registry.example/kfpd@sha256:abc")],
        );
        assert_eq!(driver_only.kfpd_image, "registry.example/kfpd@sha256:abc");
        let flag_wins = resolve(
            ServeArgs {
                kfpd_image: Some("mine:1".into()),
                create_bucket: Some(false),
                artifact_retention_days: Some("7".into()),
                ..ServeArgs::default()
            },
            &[
                ("V2_LAUNCHER_IMAGE", "x:1"),
                ("ARTIFACT_RETENTION_DAYS", "30"),
            ],
        );
        assert_eq!(flag_wins.kfpd_image, "mine:1");
        assert_eq!(flag_wins.artifact_retention_days, Some(7));
        assert!(!flag_wins.create_bucket);
    }

    #[test]
    fn retention_settings_from_flag_env_or_file() {
        let off = resolve(ServeArgs::default(), &[]);
        assert!(off.retention.is_off());
        assert_eq!(off.retention_interval, Duration::from_secs(3600));
        assert_eq!(off.cache.maximum_staleness, None);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kfpd.toml");
        std::fs::write(
            &path,
            "run_retention_days = \"90\"\nrun_retention_per_experiment = \"100\"\nretention_interval = \"10m\"\n",
        )
        .unwrap();
        let from_file = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        };
        let config = resolve(from_file.clone(), &[("ARTIFACT_RETENTION_DAYS", "30")]);
        assert_eq!(
            config.retention,
            crate::retention::Policy {
                artifact_days: Some(30),
                run_days: Some(90),
                runs_per_experiment: Some(100),
            }
        );
        assert_eq!(config.retention_interval, Duration::from_secs(600));
        assert_eq!(
            config.cache.maximum_staleness,
            Some(Duration::from_secs(30 * 86_400 - 3_600)),
            "no cache hit hands out artifacts retention is about to delete"
        );
        let flags = ServeArgs {
            run_retention_days: Some("-1".into()),
            run_retention_per_experiment: Some("5".into()),
            ..from_file
        };
        let config = resolve(flags, &[]);
        assert_eq!(config.retention.run_days, None);
        assert_eq!(config.retention.runs_per_experiment, Some(5));
    }

    #[test]
    fn upstream_images_and_bad_numbers_are_refused_by_name() {
        let refuse = |vars: &[(&str, &str)]| {
            let vars: HashMap<String, String> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Config::resolve(&ServeArgs::default(), &|name| vars.get(name).cloned())
                .unwrap_err()
                .to_string()
        };
        let error = refuse(&[("V2_LAUNCHER_IMAGE", "ghcr.io/kubeflow/kfp-launcher:2.17.0")]);
        assert!(error.contains("V2_LAUNCHER_IMAGE"), "{error}");
        assert!(error.contains("KFPD_IMAGE"), "{error}");
        let error = refuse(&[("V2_DRIVER_IMAGE", "ghcr.io/kubeflow/kfp-driver:2.17.0")]);
        assert!(error.contains("V2_DRIVER_IMAGE"), "{error}");
        for days in ["0", "thirty", "-2"] {
            let error = refuse(&[("ARTIFACT_RETENTION_DAYS", days)]);
            assert!(error.contains("artifact_retention_days"), "{days}: {error}");
        }
        let error = refuse(&[
            ("DBCONFIG_HOST", "mysql"),
            ("DBCONFIG_MYSQLCONFIG_GROUPCONCATMAXLEN", "big"),
        ]);
        assert!(error.contains("GROUPCONCATMAXLEN"), "{error}");
    }
}
