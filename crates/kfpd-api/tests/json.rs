//! The JSON form of the API messages, as the KFP SDK sends and reads it.

use std::collections::BTreeMap;

use kfpd_api::google_rpc::Status;
use kfpd_api::v2beta1::{
    predicate, recurring_run, run, trigger, CreateRunRequest, Experiment, Filter,
    ListRecurringRunsResponse, ListRunsResponse, PeriodicSchedule, PipelineVersion,
    PipelineVersionReference, Predicate, RecurringRun, Run, RuntimeConfig, RuntimeState,
    RuntimeStatus, Trigger,
};
use kfpd_api::wkt::{Any, Struct, Timestamp, Value};
use prost::Message;
use serde_json::{json, Value as Json};

fn to_json<T: serde::Serialize>(v: &T) -> Json {
    serde_json::to_value(v).expect("serialize")
}

fn from_json<T: serde::de::DeserializeOwned>(v: Json) -> T {
    serde_json::from_value(v).expect("deserialize")
}

fn from_json_err<T: serde::de::DeserializeOwned + std::fmt::Debug>(v: Json) -> String {
    serde_json::from_value::<T>(v)
        .expect_err("input should be rejected")
        .to_string()
}

/// 2024-05-01T10:00:00Z
const MAY_FIRST: i64 = 1_714_557_600;

#[test]
fn output_uses_proto_field_names_and_enum_names() {
    let r = Run {
        experiment_id: "e1".into(),
        run_id: "r1".into(),
        display_name: "hello".into(),
        storage_state: run::StorageState::Available as i32,
        pipeline_source: Some(run::PipelineSource::PipelineVersionReference(
            PipelineVersionReference {
                pipeline_id: "p1".into(),
                pipeline_version_id: "v1".into(),
            },
        )),
        service_account: "pipeline-runner".into(),
        created_at: Some(Timestamp::from_unix(MAY_FIRST)),
        scheduled_at: Some(Timestamp::from_unix(MAY_FIRST)),
        finished_at: Some(Timestamp::from_unix(0)),
        state: RuntimeState::Running as i32,
        state_history: vec![RuntimeStatus {
            update_time: Some(Timestamp::from_unix(MAY_FIRST)),
            state: RuntimeState::Pending as i32,
            error: None,
        }],
        ..Default::default()
    };
    assert_eq!(
        to_json(&r),
        json!({
            "experiment_id": "e1",
            "run_id": "r1",
            "display_name": "hello",
            "storage_state": "AVAILABLE",
            "pipeline_version_reference": {"pipeline_id": "p1", "pipeline_version_id": "v1"},
            "service_account": "pipeline-runner",
            "created_at": "2024-05-01T10:00:00Z",
            "scheduled_at": "2024-05-01T10:00:00Z",
            "finished_at": "1970-01-01T00:00:00Z",
            "state": "RUNNING",
            "state_history": [{"update_time": "2024-05-01T10:00:00Z", "state": "PENDING"}],
        })
    );
}

#[test]
fn zero_values_are_omitted() {
    assert_eq!(to_json(&Run::default()), json!({}));
    assert_eq!(to_json(&ListRunsResponse::default()), json!({}));
    let e = Experiment {
        display_name: "x".into(),
        storage_state: 0, // STORAGE_STATE_UNSPECIFIED
        ..Default::default()
    };
    assert_eq!(to_json(&e), json!({"display_name": "x"}));
    // An empty runtime config is still emitted when the message is set.
    let r = Run {
        runtime_config: Some(RuntimeConfig::default()),
        ..Default::default()
    };
    assert_eq!(to_json(&r), json!({"runtime_config": {}}));
}

#[test]
fn int64_written_as_string_read_from_number_or_string() {
    let rr = RecurringRun {
        max_concurrency: 10,
        trigger: Some(Trigger {
            trigger: Some(trigger::Trigger::PeriodicSchedule(PeriodicSchedule {
                interval_second: 60,
                ..Default::default()
            })),
        }),
        ..Default::default()
    };
    assert_eq!(
        to_json(&rr),
        json!({"max_concurrency": "10", "trigger": {"periodic_schedule": {"interval_second": "60"}}})
    );

    for input in [
        json!({"max_concurrency": 1, "trigger": {"periodic_schedule": {"interval_second": 5}}}),
        json!({"max_concurrency": "1", "trigger": {"periodic_schedule": {"interval_second": "5"}}}),
    ] {
        let rr: RecurringRun = from_json(input);
        assert_eq!(rr.max_concurrency, 1);
        match rr.trigger.and_then(|t| t.trigger) {
            Some(trigger::Trigger::PeriodicSchedule(p)) => assert_eq!(p.interval_second, 5),
            other => panic!("unexpected trigger {other:?}"),
        }
    }

    // int32 stays a JSON number.
    let list = ListRunsResponse {
        total_size: 2,
        next_page_token: "tok".into(),
        ..Default::default()
    };
    assert_eq!(
        to_json(&list),
        json!({"total_size": 2, "next_page_token": "tok"})
    );
}

#[test]
fn enums_read_from_names_or_numbers() {
    let by_number: Filter = from_json(json!({
        "predicates": [{"operation": 1, "key": "display_name", "stringValue": "a"}]
    }));
    let by_name: Filter = from_json(json!({
        "predicates": [{"operation": "EQUALS", "key": "display_name", "string_value": "a"}]
    }));
    assert_eq!(by_number, by_name);
    let p = &by_name.predicates[0];
    assert_eq!(p.operation(), predicate::Operation::Equals);
    assert_eq!(p.value, Some(predicate::Value::StringValue("a".into())));
    assert_eq!(
        to_json(&by_number),
        json!({"predicates": [{"operation": "EQUALS", "key": "display_name", "string_value": "a"}]})
    );

    let rr: RecurringRun = from_json(json!({"mode": "ENABLE", "status": 3}));
    assert_eq!(rr.mode(), recurring_run::Mode::Enable);
    assert_eq!(rr.status(), recurring_run::Status::Disabled);

    // A name that is not in the enum is rejected.
    let err = from_json_err::<Run>(json!({"state": "NOT_A_STATE"}));
    assert!(err.contains("NOT_A_STATE"), "{err}");
}

#[test]
fn filter_value_kinds_in_both_spellings() {
    let f: Filter = from_json(json!({"predicates": [
        {"operation": "GREATER_THAN", "key": "a", "intValue": 3},
        {"operation": "GREATER_THAN", "key": "b", "long_value": "4"},
        {"operation": "LESS_THAN", "key": "created_at", "timestampValue": "2024-05-01T10:00:00Z"},
        {"operation": "IN", "key": "c", "stringValues": {"values": ["x", "y"]}},
        {"operation": "IN", "key": "d", "long_values": {"values": [1, "2"]}},
        {"operation": 9, "key": "name", "string_value": "sub"},
    ]}));
    let values: Vec<_> = f
        .predicates
        .iter()
        .map(|p| p.value.clone().unwrap())
        .collect();
    assert_eq!(values[0], predicate::Value::IntValue(3));
    assert_eq!(values[1], predicate::Value::LongValue(4));
    assert_eq!(
        values[2],
        predicate::Value::TimestampValue(Timestamp::from_unix(MAY_FIRST))
    );
    assert_eq!(
        values[3],
        predicate::Value::StringValues(predicate::StringValues {
            values: vec!["x".into(), "y".into()]
        })
    );
    assert_eq!(
        values[4],
        predicate::Value::LongValues(predicate::LongValues { values: vec![1, 2] })
    );
    assert_eq!(
        f.predicates[5].operation(),
        predicate::Operation::IsSubstring
    );
}

#[test]
fn oneof_member_emitted_even_when_zero() {
    let p = Predicate {
        operation: predicate::Operation::Equals as i32,
        key: "k".into(),
        value: Some(predicate::Value::IntValue(0)),
    };
    assert_eq!(
        to_json(&p),
        json!({"operation": "EQUALS", "key": "k", "int_value": 0})
    );
}

#[test]
fn timestamps_are_rfc3339_utc() {
    let ts = Timestamp {
        seconds: MAY_FIRST,
        nanos: 120_000_000,
    };
    assert_eq!(to_json(&ts), json!("2024-05-01T10:00:00.120Z"));
    assert_eq!(
        to_json(&Timestamp {
            seconds: MAY_FIRST,
            nanos: 1
        }),
        json!("2024-05-01T10:00:00.000000001Z")
    );
    assert_eq!(
        to_json(&Timestamp::default()),
        json!("1970-01-01T00:00:00Z")
    );

    // Offsets are accepted on input and normalised to UTC.
    let t: Timestamp = from_json(json!("2024-05-01T12:00:00+02:00"));
    assert_eq!(t, Timestamp::from_unix(MAY_FIRST));
    let t: Timestamp = from_json(json!("2024-05-01T10:00:00.5Z"));
    assert_eq!(t.nanos, 500_000_000);
    from_json_err::<Timestamp>(json!("2024-05-01 10:00"));
    from_json_err::<Timestamp>(json!(1714557600));

    // Output fails for out-of-range values rather than printing garbage.
    assert!(serde_json::to_value(Timestamp {
        seconds: i64::MAX,
        nanos: 0
    })
    .is_err());
}

#[test]
fn pipeline_spec_struct_round_trips_arbitrary_json() {
    let spec = json!({
        "pipelineInfo": {"name": "hello-world"},
        "schemaVersion": "2.1.0",
        "sdkVersion": "kfp-2.15.0",
        "root": {"dag": {"tasks": {}}, "inputDefinitions": {"parameters": {"n": {"parameterType": "NUMBER_INTEGER"}}}},
        "deploymentSpec": {"executors": {"exec-a": {"container": {"args": ["--x", "1"], "image": "python:3.11"}}}},
        "numbers": [0, 3, -7, 2.5, 1e-3, 123456789012_i64],
        "flags": [true, false, null],
        "nested": {"empty_list": [], "empty_obj": {}},
    });
    let pv: PipelineVersion = from_json(json!({"pipeline_spec": spec.clone()}));
    let out = to_json(&pv);
    assert_eq!(out, json!({"pipeline_spec": spec}));
    // Integral numbers are written without a fractional part, like Go.
    let text = serde_json::to_string(&pv).unwrap();
    assert!(text.contains("[0,3,-7,2.5,0.001,123456789012]"), "{text}");

    // Through binary protobuf and back.
    let bytes = pv.encode_to_vec();
    let back = PipelineVersion::decode(bytes.as_slice()).unwrap();
    assert_eq!(back, pv);

    // A Struct must be an object.
    from_json_err::<PipelineVersion>(json!({"pipeline_spec": [1, 2]}));
}

#[test]
fn struct_converts_to_and_from_serde_json() {
    let j = json!({"a": 1, "b": [true, null, "s"], "c": {"d": 1.5}});
    let s = Struct::try_from(j.clone()).unwrap();
    assert_eq!(s.to_json(), j);
    assert_eq!(Json::from(s), j);
    assert!(Struct::try_from(json!("x")).is_err());
    assert_eq!(Value::from("x").to_json(), json!("x"));
}

#[test]
fn runtime_config_parameters_keep_json_types() {
    let rc: RuntimeConfig = from_json(json!({
        "parameters": {"a": 3, "b": "s", "c": [1, {"d": null}], "e": false, "f": 0.25},
        "pipeline_root": "minio://bucket/root",
    }));
    assert_eq!(rc.parameters.len(), 5);
    assert_eq!(
        to_json(&rc),
        json!({
            "parameters": {"a": 3, "b": "s", "c": [1, {"d": null}], "e": false, "f": 0.25},
            "pipeline_root": "minio://bucket/root",
        })
    );
}

#[test]
fn unknown_fields_are_rejected() {
    let err = from_json_err::<Run>(json!({"display_name": "x", "namespace": "kubeflow"}));
    assert!(err.contains("namespace"), "{err}");
    from_json_err::<Filter>(json!({"predicates": [{"op": 1}]}));
    from_json_err::<CreateRunRequest>(json!({"run": {}, "extra": 1}));
}

#[test]
fn list_recurring_runs_uses_camel_case_key() {
    let resp = ListRecurringRunsResponse {
        recurring_runs: vec![RecurringRun {
            recurring_run_id: "rr1".into(),
            ..Default::default()
        }],
        total_size: 1,
        next_page_token: String::new(),
    };
    assert_eq!(
        to_json(&resp),
        json!({"recurringRuns": [{"recurring_run_id": "rr1"}], "total_size": 1})
    );
    let back: ListRecurringRunsResponse = from_json(to_json(&resp));
    assert_eq!(back, resp);
}

#[test]
fn camel_case_input_names_are_accepted() {
    let r: Run = from_json(json!({
        "experimentId": "e1",
        "displayName": "d",
        "pipelineVersionReference": {"pipelineId": "p", "pipelineVersionId": "v"},
        "runtimeConfig": {"parameters": {"x": 1}, "pipelineRoot": "/tmp"},
    }));
    assert_eq!(r.experiment_id, "e1");
    assert_eq!(r.display_name, "d");
    assert_eq!(
        r.pipeline_source,
        Some(run::PipelineSource::PipelineVersionReference(
            PipelineVersionReference {
                pipeline_id: "p".into(),
                pipeline_version_id: "v".into()
            }
        ))
    );
    assert_eq!(r.runtime_config.unwrap().pipeline_root, "/tmp");
}

#[test]
fn sdk_create_run_body_parses() {
    // Shape of the body kfp.Client.run_pipeline sends (pipeline spec inline).
    let body = json!({
        "display_name": "my run",
        "description": "",
        "experiment_id": "6a1",
        "pipeline_spec": {"pipelineInfo": {"name": "p"}, "root": {}},
        "runtime_config": {"parameters": {"a": 3}},
        "service_account": "sa",
    });
    let r: Run = from_json(body);
    assert!(matches!(
        r.pipeline_source,
        Some(run::PipelineSource::PipelineSpec(_))
    ));
    // Setting two members of one oneof is an error.
    from_json_err::<Run>(json!({
        "pipeline_spec": {},
        "pipeline_version_reference": {"pipeline_id": "p"},
    }));
}

#[test]
fn tags_maps_serialize_sorted() {
    let pv = PipelineVersion {
        tags: BTreeMap::from([("b".into(), "2".into()), ("a".into(), "1".into())]),
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_string(&pv).unwrap(),
        r#"{"tags":{"a":"1","b":"2"}}"#
    );
}

#[test]
fn status_details_use_type_key() {
    let inner = Status {
        code: 5,
        message: "Run 123 not found".into(),
        details: vec![],
    };
    let st = Status {
        code: 5,
        message: "Failed to get a run: Run 123 not found".into(),
        details: vec![Any::pack(&inner)],
    };
    let j = to_json(&st);
    assert_eq!(
        j,
        json!({
            "code": 5,
            "message": "Failed to get a run: Run 123 not found",
            "details": [{"@type": "type.googleapis.com/google.rpc.Status", "code": 5, "message": "Run 123 not found"}],
        })
    );
    let back: Status = from_json(j);
    assert_eq!(back, st);
    assert_eq!(back.details[0].unpack::<Status>().unwrap(), Some(inner));

    // Well-known payloads go under "value".
    let any = Any::pack(&Timestamp::from_unix(MAY_FIRST));
    assert_eq!(
        to_json(&any),
        json!({"@type": "type.googleapis.com/google.protobuf.Timestamp", "value": "2024-05-01T10:00:00Z"})
    );
    assert_eq!(from_json::<Any>(to_json(&any)), any);

    // Unknown payload types are carried as base64 bytes.
    let other = Any {
        type_url: "type.googleapis.com/example.Thing".into(),
        value: vec![8, 1],
    };
    assert_eq!(
        to_json(&other),
        json!({"@type": "type.googleapis.com/example.Thing", "value": "CAE="})
    );
    assert_eq!(from_json::<Any>(to_json(&other)), other);
}

#[test]
fn deprecated_oneof_member_round_trips() {
    #[allow(deprecated)]
    let src = recurring_run::PipelineSource::PipelineVersionId("v9".into());
    let rr = RecurringRun {
        pipeline_source: Some(src),
        ..Default::default()
    };
    assert_eq!(to_json(&rr), json!({"pipeline_version_id": "v9"}));
    assert_eq!(
        from_json::<RecurringRun>(json!({"pipelineVersionId": "v9"})),
        rr
    );
}

#[test]
fn file_descriptor_set_lists_the_services() {
    let fds = prost_types::FileDescriptorSet::decode(kfpd_api::FILE_DESCRIPTOR_SET).unwrap();
    let services: Vec<String> = fds
        .file
        .iter()
        .filter(|f| f.package() == "kubeflow.pipelines.backend.api.v2beta1")
        .flat_map(|f| f.service.iter().map(|s| s.name().to_owned()))
        .collect();
    for svc in [
        "RunService",
        "ExperimentService",
        "PipelineService",
        "RecurringRunService",
        "ReportService",
    ] {
        assert!(
            services.iter().any(|s| s == svc),
            "{svc} missing: {services:?}"
        );
    }
    assert!(fds
        .file
        .iter()
        .any(|f| f.name() == "google/rpc/status.proto"));
}

#[test]
fn null_means_unset() {
    // protobuf JSON treats `null` as "not set" for every field kind.
    let r: Run = from_json(json!({
        "display_name": null,
        "state": null,
        "runtime_config": null,
        "state_history": null,
        "plugins_input": null,
        "pipeline_spec": null,
        "pipeline_version_reference": {"pipeline_id": "p"},
    }));
    assert_eq!(
        r,
        Run {
            pipeline_source: Some(run::PipelineSource::PipelineVersionReference(
                PipelineVersionReference {
                    pipeline_id: "p".into(),
                    pipeline_version_id: String::new(),
                }
            )),
            ..Default::default()
        }
    );
    let rr: RecurringRun = from_json(json!({"max_concurrency": null, "no_catchup": null}));
    assert_eq!(rr, RecurringRun::default());
    // Inside a Struct, null is a real value.
    let rc: RuntimeConfig = from_json(json!({"parameters": {"x": null}}));
    assert_eq!(rc.parameters["x"], Value::null());
}

#[test]
fn integral_numbers_in_other_notations() {
    for v in [json!(5.0), json!("5"), json!("5.0"), json!("5e0"), json!(5)] {
        let p: PeriodicSchedule = from_json(json!({"interval_second": v}));
        assert_eq!(p.interval_second, 5, "{v}");
    }
    for v in [
        json!(5.5),
        json!("5.5"),
        json!(" 5"),
        json!("0x5"),
        json!(true),
        json!(""),
    ] {
        from_json_err::<PeriodicSchedule>(json!({"interval_second": v}));
    }
    // int32 range is enforced.
    from_json_err::<Predicate>(json!({"int_value": 3_000_000_000_i64}));
    let p: Predicate = from_json(json!({"intValue": "-7"}));
    assert_eq!(p.value, Some(predicate::Value::IntValue(-7)));
}

#[test]
fn body_captured_from_the_sdk_parses_and_round_trips() {
    let body: Json = serde_json::from_str(include_str!("data/sdk_create_run_body.json")).unwrap();
    let r: Run = from_json(body.clone());
    assert_eq!(r.display_name, body["display_name"]);
    assert_eq!(r.experiment_id, body["experiment_id"]);
    let out = to_json(&r);
    // Struct numbers are doubles; like Go's protojson, integral values come
    // back without a fractional part (`"defaultValue": 1.0` -> `1`).
    let params = &body["pipeline_spec"]["root"]["inputDefinitions"]["parameters"];
    assert_eq!(params["a"]["defaultValue"], json!(1.0));
    let out_params = &out["pipeline_spec"]["root"]["inputDefinitions"]["parameters"];
    assert_eq!(out_params["a"]["defaultValue"], json!(1));
    assert_eq!(
        normalize_numbers(out["pipeline_spec"].clone()),
        normalize_numbers(body["pipeline_spec"].clone())
    );
    assert_eq!(out["runtime_config"], body["runtime_config"]);
    assert_eq!(out["service_account"], body["service_account"]);
}

/// Makes every JSON number an f64 so `1` and `1.0` compare equal.
fn normalize_numbers(v: Json) -> Json {
    match v {
        Json::Number(n) => json!(n.as_f64().unwrap()),
        Json::Array(a) => Json::Array(a.into_iter().map(normalize_numbers).collect()),
        Json::Object(o) => Json::Object(
            o.into_iter()
                .map(|(k, v)| (k, normalize_numbers(v)))
                .collect(),
        ),
        other => other,
    }
}
