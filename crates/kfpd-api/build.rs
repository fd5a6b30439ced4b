//! Generates the v2beta1 API types from the `.proto` files at the workspace
//! root: prost messages, tonic service stubs (both in one prost pass, so the
//! message types are shared) and pbjson serde impls for protobuf-JSON.
//! The well-known types the API imports are generated here too (not taken
//! from `prost-types`), so that the crate controls their JSON form.

use std::env;
use std::error::Error;
use std::path::PathBuf;

/// Proto files relative to the workspace `proto/` directory.
const PROTOS: &[&str] = &[
    "google/rpc/status.proto",
    "kubeflow/pipelines/backend/api/v2beta1/experiment.proto",
    "kubeflow/pipelines/backend/api/v2beta1/filter.proto",
    "kubeflow/pipelines/backend/api/v2beta1/healthz.proto",
    "kubeflow/pipelines/backend/api/v2beta1/pipeline.proto",
    "kubeflow/pipelines/backend/api/v2beta1/recurring_run.proto",
    "kubeflow/pipelines/backend/api/v2beta1/report.proto",
    "kubeflow/pipelines/backend/api/v1beta1/report.proto",
    "kubeflow/pipelines/backend/api/v2beta1/run.proto",
    "kubeflow/pipelines/backend/api/v2beta1/runtime_config.proto",
    "kfpd/v1/launcher.proto",
];

/// Name of the serialized `FileDescriptorSet` written to `OUT_DIR`.
const DESCRIPTOR_FILE: &str = "kfp_v2beta1_descriptor.bin";

fn main() -> Result<(), Box<dyn Error>> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../../proto").canonicalize()?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join(DESCRIPTOR_FILE);

    // Always use the vendored protoc (and its copy of the well-known type
    // definitions) so no system install is needed.
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let wkt_include = protoc_bin_vendored::include_path()?;

    let protos: Vec<PathBuf> = PROTOS.iter().map(|p| proto_root.join(p)).collect();
    for p in &protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    println!("cargo:rerun-if-changed=build.rs");

    let includes = vec![proto_root.clone(), wkt_include];

    let mut config = prost_build::Config::new();
    config
        .protoc_executable(&protoc)
        .file_descriptor_set_path(&descriptor_path)
        // Generate the google.protobuf types used by the API ourselves: their
        // JSON form (Timestamp, Struct, Value, ListValue, Any) is hand-written
        // in `src/wkt_json.rs` to follow the protobuf JSON mapping exactly.
        .compile_well_known_types()
        // Sorted maps give deterministic JSON output (keys in order).
        .btree_map(["."])
        // `prost::Name` impls, used to pack messages into `Any`.
        .enable_type_names()
        .type_name_domain(["."], "type.googleapis.com");

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_well_known_types(true)
        .compile_with_config(config, &protos, &includes)?;

    let descriptor_set = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_set)?
        .preserve_proto_field_names()
        .btree_map(["."])
        .exclude([
            ".google.protobuf.Any",
            ".google.protobuf.ListValue",
            ".google.protobuf.NullValue",
            ".google.protobuf.Struct",
            ".google.protobuf.Timestamp",
            ".google.protobuf.Value",
        ])
        .build(&[
            ".kubeflow.pipelines.backend.api.v2beta1",
            ".google.rpc",
            ".google.protobuf",
        ])?;

    for file in [
        "kubeflow.pipelines.backend.api.v2beta1.serde.rs",
        "google.rpc.serde.rs",
        "google.protobuf.serde.rs",
    ] {
        let path = out_dir.join(file);
        let code = std::fs::read_to_string(&path)?;
        std::fs::write(&path, adjust_serde_code(&code)?)?;
    }

    Ok(())
}

/// Helper types (in `src/json_support.rs`) substituted into pbjson's output.
const NULL_OR: &str = "crate::json_support::NullOr";
const NUMBER: &str = "crate::json_support::NumberDeserialize";

/// Adjusts pbjson's deserializers to the protobuf JSON mapping as Go's
/// protojson implements it:
///
/// * a JSON `null` for a singular scalar, enum, repeated or map field means
///   "unset" (pbjson rejects it): every `Some(map_.next_value::<T>()?` that
///   reads a non-optional field becomes `Some(map_.next_value::<NullOr<T>>()?.0`;
/// * integers are also accepted in exponent/fraction notation when the value
///   is integral (`1.0`, `"1e2"`): pbjson's number helper is replaced.
fn adjust_serde_code(code: &str) -> Result<String, Box<dyn Error>> {
    const CALL: &str = "map_.next_value";
    let code = code.replace("::pbjson::private::NumberDeserialize", NUMBER);
    let mut out = String::with_capacity(code.len() + code.len() / 8);
    let mut rest = code.as_str();
    while let Some(pos) = rest.find(CALL) {
        let (before, at) = rest.split_at(pos);
        out.push_str(before);
        let wraps_field = out.trim_end().ends_with("Some(");
        let after_call = &at[CALL.len()..];
        if !wraps_field {
            out.push_str(CALL);
            rest = after_call;
            continue;
        }
        if let Some(tail) = after_call.strip_prefix("()?") {
            out.push_str(&format!("{CALL}::<{NULL_OR}<_>>()?.0"));
            rest = tail;
        } else if let Some(generic) = after_call.strip_prefix("::<") {
            // Find the `>` closing the turbofish.
            let mut depth = 1usize;
            let mut end = None;
            for (i, c) in generic.char_indices() {
                match c {
                    '<' => depth += 1,
                    '>' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(i);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let end = end.ok_or("unbalanced turbofish in generated serde code")?;
            let ty = &generic[..end];
            let tail = generic[end + 1..]
                .strip_prefix("()?")
                .ok_or("unexpected next_value call shape in generated serde code")?;
            out.push_str(&format!("{CALL}::<{NULL_OR}<{ty}>>()?.0"));
            rest = tail;
        } else {
            return Err("unexpected next_value call shape in generated serde code".into());
        }
    }
    out.push_str(rest);
    Ok(out)
}
