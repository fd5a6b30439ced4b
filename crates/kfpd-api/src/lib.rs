//! Kubeflow Pipelines v2beta1 API types.
//!
//! Everything except [`mod@wkt`]'s JSON impls is generated at build time from
//! the `.proto` files in the workspace's `proto/` directory:
//!
//! * prost message structs and enums (protobuf binary encoding),
//! * serde `Serialize`/`Deserialize` impls following the protobuf JSON
//!   mapping: proto (snake_case) field names on output, proto and lowerCamel
//!   names accepted on input, unknown fields rejected, zero values omitted,
//!   64-bit integers written as strings, enums written as names,
//! * tonic server traits (`*_service_server`) and clients
//!   (`*_service_client`) for the services.
//!
//! Maps are `BTreeMap`s so JSON output is deterministic.

mod json_support;
mod wkt_json;

/// Generated code, laid out in one module per proto package so that the
/// relative paths between packages resolve.
#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    rustdoc::all,
    deprecated,
    unused_qualifications
)]
mod generated {
    pub mod google {
        pub mod protobuf {
            include!(concat!(env!("OUT_DIR"), "/google.protobuf.rs"));
            include!(concat!(env!("OUT_DIR"), "/google.protobuf.serde.rs"));
        }

        pub mod rpc {
            include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
            include!(concat!(env!("OUT_DIR"), "/google.rpc.serde.rs"));
        }
    }

    pub mod api {
        include!(concat!(env!("OUT_DIR"), "/api.rs"));
    }

    pub mod kfpd {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/kfpd.v1.rs"));
        }
    }

    pub mod kubeflow {
        pub mod pipelines {
            pub mod backend {
                pub mod api {
                    pub mod v2beta1 {
                        include!(concat!(
                            env!("OUT_DIR"),
                            "/kubeflow.pipelines.backend.api.v2beta1.rs"
                        ));
                        include!(concat!(
                            env!("OUT_DIR"),
                            "/kubeflow.pipelines.backend.api.v2beta1.serde.rs"
                        ));
                    }
                }
            }
        }
    }
}

/// Messages, enums and services of package
/// `kubeflow.pipelines.backend.api.v2beta1`.
pub use generated::kubeflow::pipelines::backend::api::v2beta1;

/// Package `api` (v1beta1): only the ReportService upstream's persistence agent calls.
pub use generated::api as v1beta1;

/// Package `kfpd.v1`: kfpd's own launcher service (not upstream's API).
pub use generated::kfpd::v1 as kfpd_v1;

/// Package `google.rpc` (the `Status` error message).
pub use generated::google::rpc as google_rpc;

/// The `google.protobuf` well-known types used by the API messages
/// (`Timestamp`, `Struct`, `Value`, `ListValue`, `Any`, `Empty`), with JSON
/// impls matching the protobuf JSON mapping.
pub mod wkt {
    pub use crate::generated::google::protobuf::*;
    pub use crate::wkt_json::TimestampRangeError;
}

/// Serialized `google.protobuf.FileDescriptorSet` covering every API proto
/// file and the well-known types they import, e.g. for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/kfp_v2beta1_descriptor.bin"));
