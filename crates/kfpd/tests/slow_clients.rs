//! Slow and oversized clients against the real `kfpd serve` on loopback: bodies over
//! the limit are refused naming it (REST and gRPC), a client dripping its headers
//! or its body is cut off, connections with nothing to do are closed after the idle
//! timeout, connections over the cap are shed while the ones admitted keep being
//! served, and the server answers normal calls throughout.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use kfpd_api::v2beta1 as api;
use kfpd_api::v2beta1::experiment_service_client::ExperimentServiceClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a dripping client would keep going if nothing cut it off; every
/// limit in these tests is a few seconds, far below it.
const DRIP_FOR: Duration = Duration::from_secs(90);

fn host(base: &str) -> String {
    base.trim_start_matches("http://").to_string()
}

/// Reads until the server closes the connection (or resets it); what it sent.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout(DRIP_FOR, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(read)) => answer.extend_from_slice(&buffer[..read]),
            Err(_) => panic!("the server kept the connection open for {DRIP_FOR:?}"),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// Writes `bytes` one at a time every `pause` until the server closes the
/// connection; returns how many were written and what the server answered.
async fn drip(stream: TcpStream, bytes: Vec<u8>, pause: Duration) -> (usize, String) {
    let (mut reader, mut writer) = stream.into_split();
    let reading = tokio::spawn(async move {
        let mut answer = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            match tokio::time::timeout(DRIP_FOR, reader.read(&mut buffer)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(read)) => answer.extend_from_slice(&buffer[..read]),
            }
        }
        String::from_utf8_lossy(&answer).into_owned()
    });
    let mut written = 0;
    for byte in bytes {
        if reading.is_finished() || writer.write_all(&[byte]).await.is_err() {
            break;
        }
        written += 1;
        tokio::time::sleep(pause).await;
    }
    let answer = reading.await.expect("reader");
    (written, answer)
}

/// The client of a normal caller: it keeps its connection between requests (the
/// test servers' own client opens one per request).
fn normal_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

async fn healthz(client: &reqwest::Client, server: &Server) -> u16 {
    client
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("healthz answers")
        .status()
        .as_u16()
}

async fn grpc_experiments(server: &Server) -> ExperimentServiceClient<tonic::transport::Channel> {
    let address = server.grpc.clone().expect("gRPC address");
    let channel = tonic::transport::Channel::from_shared(address)
        .expect("uri")
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .connect()
        .await
        .expect("connect to gRPC");
    ExperimentServiceClient::new(channel)
}

/// Raises this process's soft limit on open files towards `wanted` (at most to
/// the hard limit) and returns the soft limit in force.
fn raise_open_files(wanted: u64) -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    let current = limit.current.unwrap_or(u64::MAX);
    if current >= wanted {
        return current;
    }
    limit.current = Some(wanted.min(hard));
    if let Err(error) = setrlimit(Resource::Nofile, limit) {
        eprintln!("cannot raise the open files limit: {error}");
        return current;
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_naming_it() {
    let server = Server::start_with(&[
        "--max-body-bytes",
        "4096",
        "--grpc-max-message-bytes",
        "1048576",
    ]);
    let address = host(&server.base);

    // A declared length over the limit: refused before the body is sent.
    let mut stream = TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /apis/v2beta1/experiments HTTP/1.1\r\nHost: {address}\r\ncontent-type: application/json\r\ncontent-length: 10000\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("10000 bytes is larger than the limit of 4096 bytes"),
        "{answer}"
    );

    // A chunked body (no declared length) over the limit, on a JSON route and
    // on the upload route (whose errors keep the upload shape).
    let padding = " ".repeat(8192);
    let json = format!("{{\"display_name\":\"big\"{padding}}}");
    let multipart = format!(
        "--XYZ\r\ncontent-disposition: form-data; name=\"uploadfile\"; filename=\"p.yaml\"\r\n\r\n{padding}\r\n--XYZ--\r\n"
    );
    for (path, content_type, body, shape) in [
        (
            "/apis/v2beta1/experiments",
            "application/json",
            json,
            "\"code\":8",
        ),
        (
            "/apis/v2beta1/pipelines/upload?name=big",
            "multipart/form-data; boundary=XYZ",
            multipart,
            "error_message",
        ),
    ] {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {address}\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let answer = read_to_close(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
        assert!(
            answer.contains("larger than the limit of 4096 bytes (--max-body-bytes)"),
            "{path}: {answer}"
        );
        assert!(answer.contains(shape), "{path}: {answer}");
    }

    // gRPC: a message over --grpc-max-message-bytes is RESOURCE_EXHAUSTED.
    let mut experiments = grpc_experiments(&server).await;
    let error = experiments
        .create_experiment(api::CreateExperimentRequest {
            experiment: Some(api::Experiment {
                display_name: "big".into(),
                description: "x".repeat(2 << 20),
                ..Default::default()
            }),
        })
        .await
        .expect_err("a 2 MiB message is over a 1 MiB limit");
    assert_eq!(error.code(), tonic::Code::ResourceExhausted, "{error:?}");
    assert!(
        error
            .message()
            .contains("larger than the limit of 1048576 bytes"),
        "{error:?}"
    );

    // Nothing was stored, and both listeners still answer.
    let (status, listed) = server.get("/experiments").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = listed["experiments"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|experiment| experiment["display_name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(names, ["Default"], "{listed}");
    experiments
        .list_experiments(api::ListExperimentsRequest::default())
        .await
        .expect("ListExperiments after the refusal");
}

#[tokio::test]
async fn a_client_dripping_its_headers_is_cut_off() {
    let normal = normal_client();
    let server = Server::start_with(&["--header-read-timeout", "2s"]);
    let address = host(&server.base);
    let started = Instant::now();

    // REST: a request line, then one header byte every 100 ms, never ending.
    let mut stream = TcpStream::connect(&address).await.unwrap();
    stream
        .write_all(b"GET /apis/v2beta1/healthz HTTP/1.1\r\n")
        .await
        .unwrap();
    let headers = "x-drip: a\r\n".repeat(100).into_bytes();
    let total = headers.len();
    let (written, answer) = drip(stream, headers, Duration::from_millis(100)).await;
    assert!(
        written < total,
        "the server read all {total} header bytes without cutting the client off"
    );
    assert!(!answer.contains("200 OK"), "{answer}");

    // gRPC: the HTTP/2 preface, one byte every 100 ms.
    let grpc = host(server.grpc.as_deref().expect("gRPC address"));
    let stream = TcpStream::connect(&grpc).await.unwrap();
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".repeat(40);
    let total = preface.len();
    let (written, _) = drip(stream, preface, Duration::from_millis(100)).await;
    assert!(written < total, "gRPC read {total} preface bytes");
    eprintln!(
        "both dripping clients cut off after {:?}",
        started.elapsed()
    );

    // Meanwhile and afterwards, normal calls are answered on both listeners.
    assert_eq!(healthz(&normal, &server).await, 200);
    grpc_experiments(&server)
        .await
        .list_experiments(api::ListExperimentsRequest::default())
        .await
        .expect("ListExperiments");
}

#[tokio::test]
async fn a_client_dripping_its_body_is_cut_off_with_408() {
    let server = Server::start_with(&["--body-read-timeout", "2s", "--min-body-rate", "2000"]);
    let address = host(&server.base);

    // 10 bytes a second against a minimum of 2,000 once the 2 s grace is over.
    let stream = TcpStream::connect(&address).await.unwrap();
    let body = format!("{{\"display_name\":\"slow\"{}}}", " ".repeat(2000));
    let mut request = format!(
        "POST /apis/v2beta1/experiments HTTP/1.1\r\nHost: {address}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    let head_length = request.len();
    request.extend_from_slice(body.as_bytes());
    let (mut head_stream, rest) = (stream, request.split_off(head_length));
    head_stream.write_all(&request).await.unwrap();
    let (written, answer) = drip(head_stream, rest, Duration::from_millis(100)).await;
    assert!(written < body.len(), "the whole slow body was read");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":4"), "{answer}");
    assert!(
        answer.contains("request body arrived too slowly") && answer.contains("--min-body-rate"),
        "{answer}"
    );

    // A body sent steadily for longer than the grace, above the rate, is read.
    let mut stream = TcpStream::connect(&address).await.unwrap();
    let body = format!("{{\"display_name\":\"steady\"{}}}", " ".repeat(150_000));
    let head = format!(
        "POST /apis/v2beta1/experiments HTTP/1.1\r\nHost: {address}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.as_bytes().chunks(5_000) {
        stream.write_all(chunk).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // gRPC: a unary message dripped byte by byte is answered DEADLINE_EXCEEDED.
    let grpc = server.grpc.clone().expect("gRPC address");
    let status = drip_grpc_message(&grpc).await;
    assert_eq!(status.0.as_deref(), Some("4"), "{status:?}");
    assert!(
        status.1.contains("request body arrived too slowly"),
        "{status:?}"
    );

    let (status, listed) = server.get("/experiments").await;
    assert_eq!(status, 200);
    let text = listed.to_string();
    assert!(
        text.contains("steady") && !text.contains("\"slow\""),
        "{text}"
    );
}

/// Sends a CreateExperiment whose 2,000-byte message arrives 10 bytes a second,
/// over HTTP/2; returns the call's `grpc-status` and `grpc-message`.
async fn drip_grpc_message(base: &str) -> (Option<String>, String) {
    use http_body_util::BodyExt;
    use prost::Message;

    let stream = TcpStream::connect(host(base)).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("HTTP/2 handshake");
    tokio::spawn(connection);
    let message = api::CreateExperimentRequest {
        experiment: Some(api::Experiment {
            display_name: "dripped".into(),
            description: "x".repeat(2000),
            ..Default::default()
        }),
    }
    .encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    let (chunks, body) = tokio::sync::mpsc::channel::<
        Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>,
    >(4);
    let body = http_body_util::StreamBody::new(tokio_stream_of(body));
    let request = http::Request::post(format!(
        "{base}/kubeflow.pipelines.backend.api.v2beta1.ExperimentService/CreateExperiment"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(body)
    .unwrap();
    let dripping = tokio::spawn(async move {
        for byte in framed {
            let frame = hyper::body::Frame::data(bytes::Bytes::from(vec![byte]));
            if chunks.send(Ok(frame)).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let response = tokio::time::timeout(DRIP_FOR, sender.send_request(request))
        .await
        .expect("an answer before the drip ends")
        .expect("a response");
    dripping.abort();
    let header = |name: &str, headers: &http::HeaderMap| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
    };
    let (parts, body) = response.into_parts();
    if let Some(status) = header("grpc-status", &parts.headers) {
        return (
            Some(status),
            header("grpc-message", &parts.headers).unwrap_or_default(),
        );
    }
    let collected = body.collect().await.expect("response body");
    let trailers = collected.trailers().cloned().unwrap_or_default();
    (
        header("grpc-status", &trailers),
        header("grpc-message", &trailers).unwrap_or_default(),
    )
}

/// The receiver as a stream, for `StreamBody`.
fn tokio_stream_of<T: Send + 'static>(
    mut receiver: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let normal = normal_client();
    let server = Server::start_with(&["--idle-timeout", "2s"]);
    let rest = host(&server.base);
    let grpc = host(server.grpc.as_deref().expect("gRPC address"));
    let mut idle = Vec::new();
    for address in [&rest, &grpc] {
        for _ in 0..20 {
            idle.push(TcpStream::connect(address).await.unwrap());
        }
    }
    // A keep-alive connection that made one call and then went quiet.
    let mut used = TcpStream::connect(&rest).await.unwrap();
    used.write_all(
        format!("GET /apis/v2beta1/healthz HTTP/1.1\r\nHost: {rest}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    idle.push(used);
    // Each is closed by the server (an HTTP/2 server sends its settings first,
    // so gRPC connections may carry a few bytes).
    let mut answered = 0;
    for mut stream in idle {
        let answer = read_to_close(&mut stream).await;
        if answer.starts_with("HTTP/1.1 200") {
            answered += 1;
        } else {
            assert!(!answer.starts_with("HTTP/1.1"), "{answer}");
        }
    }
    assert_eq!(
        answered, 1,
        "the keep-alive call was answered before the close"
    );
    assert_eq!(healthz(&normal, &server).await, 200);
}

#[tokio::test]
async fn many_idle_connections_while_a_normal_client_is_served() {
    let normal = normal_client();
    let soft = raise_open_files(4_000);
    // The test process holds every client socket; leave room for the rest.
    let idle_count = 2_000.min(soft.saturating_sub(300) as usize);
    assert!(idle_count >= 500, "open files soft limit {soft} is too low");
    let cap = idle_count + 20;
    let cap_text = cap.to_string();
    let server = Server::start_with(&["--max-connections", &cap_text]);
    let rest = host(&server.base);

    // The normal client's connection is admitted first and kept in its pool.
    assert_eq!(healthz(&normal, &server).await, 200);
    let mut idle = Vec::with_capacity(idle_count);
    for _ in 0..idle_count {
        idle.push(TcpStream::connect(&rest).await.expect("connect"));
    }
    for _ in 0..50 {
        assert_eq!(healthz(&normal, &server).await, 200);
    }
    let (status, _) = server.get("/runs").await;
    assert_eq!(status, 200);

    // Past the cap new connections are answered 503 and closed; the admitted
    // ones keep working.
    // Admitted extras stay open (keep-alive), so the cap is reached and stays so.
    let mut shed = 0;
    let mut admitted = Vec::new();
    for _ in 0..40 {
        let mut extra = TcpStream::connect(&rest).await.expect("connect");
        let _ = extra
            .write_all(
                format!("GET /apis/v2beta1/healthz HTTP/1.1\r\nHost: {rest}\r\n\r\n").as_bytes(),
            )
            .await;
        let mut buffer = [0u8; 1024];
        let read = tokio::time::timeout(Duration::from_secs(30), extra.read(&mut buffer))
            .await
            .expect("an answer, admitted or shed")
            .unwrap_or(0);
        let answer = String::from_utf8_lossy(&buffer[..read]).into_owned();
        if answer.starts_with("HTTP/1.1 503") {
            assert!(answer.contains("too many open connections"), "{answer}");
            shed += 1;
        } else {
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
            admitted.push(extra);
        }
    }
    assert!(
        shed >= 20,
        "only {shed} of 40 connections over the cap were shed"
    );
    assert_eq!(healthz(&normal, &server).await, 200);
    for stream in idle.iter_mut().take(20) {
        stream
            .write_all(
                format!("GET /apis/v2beta1/healthz HTTP/1.1\r\nHost: {rest}\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let mut buffer = [0u8; 512];
        let read = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buffer))
            .await
            .expect("an idle connection admitted earlier is still served")
            .unwrap();
        assert!(
            String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 200"),
            "an admitted connection was hurt"
        );
    }

    // The counts are in /metrics, asked on the normal client's kept connection.
    let metrics = normal
        .get(server.url("/metrics").replace("/apis/v2beta1", ""))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let shed_line = metrics
        .lines()
        .find(|line| line.starts_with("kfpd_connections_shed_total{listener=\"rest\"}"))
        .unwrap_or_else(|| panic!("no shed count in /metrics:\n{metrics}"));
    let counted: u64 = shed_line
        .rsplit(' ')
        .next()
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    assert!(counted >= shed as u64, "{shed_line}, {shed} shed");

    drop(idle);
    assert_eq!(healthz(&normal, &server).await, 200);
}
