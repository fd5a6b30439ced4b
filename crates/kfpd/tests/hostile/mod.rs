//! A seeded generator of hostile inputs for the fuzz tests: a corpus of packages
//! (the repository's test pipelines and hand-made bombs, deep nesting, huge
//! numbers, links and `..` in archives), CEL expressions, filters and page tokens,
//! and mutations of them (bit flips, splices, truncation, inserted tokens).
//! Runs on the stable toolchain as a normal test; the seed and the time budget
//! come from `KFPD_FUZZ_SEED` and `KFPD_FUZZ_SECONDS`.

#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How long each fuzz target runs, and the seed it starts from.
pub struct Budget {
    pub seconds: Duration,
    pub seed: u64,
}

impl Budget {
    /// `KFPD_FUZZ_SECONDS` (default: `default_seconds`), `KFPD_FUZZ_SEED` (default 1).
    pub fn from_env(default_seconds: u64) -> Budget {
        let seconds = std::env::var("KFPD_FUZZ_SECONDS")
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or(default_seconds);
        let seed = std::env::var("KFPD_FUZZ_SEED")
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or(1);
        Budget {
            seconds: Duration::from_secs(seconds),
            seed,
        }
    }

    pub fn rng(&self, salt: u64) -> StdRng {
        StdRng::seed_from_u64(self.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt)
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One upload: its file name and bytes.
#[derive(Clone)]
pub struct Upload {
    pub name: String,
    pub bytes: Vec<u8>,
}

fn upload(name: &str, bytes: Vec<u8>) -> Upload {
    Upload {
        name: name.to_string(),
        bytes,
    }
}

pub fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut writer = zip::ZipWriter::new(&mut out);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in members {
            writer.start_file(*name, options).expect("zip member");
            writer.write_all(bytes).expect("zip write");
        }
        writer.finish().expect("zip finish");
    }
    out.into_inner()
}

fn zip_with_symlink(name: &str, target: &str) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut writer = zip::ZipWriter::new(&mut out);
        let options = zip::write::SimpleFileOptions::default();
        writer
            .add_symlink(name, target, options)
            .expect("zip symlink");
        writer.finish().expect("zip finish");
    }
    out.into_inner()
}

/// A link member's kind and target.
type Link<'a> = Option<(tar::EntryType, &'a str)>;

/// A tar.gz whose members are files, or links (`Some(target)`).
pub fn tar_gz_of(members: &[(&str, &[u8], Link)]) -> Vec<u8> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(encoder);
    for (name, bytes, link) in members {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        match link {
            Some((kind, target)) => {
                header.set_entry_type(*kind);
                header.set_size(0);
                // Raw names: the tar crate refuses `..` through set_path.
                let raw = header.as_old_mut();
                raw.linkname[..target.len()].copy_from_slice(target.as_bytes());
            }
            None => header.set_size(bytes.len() as u64),
        }
        let raw = header.as_old_mut();
        raw.name.fill(0);
        raw.name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        builder
            .append(&header, if link.is_some() { &[][..] } else { *bytes })
            .expect("tar member");
    }
    builder
        .into_inner()
        .and_then(|encoder| encoder.finish())
        .expect("tar.gz")
}

fn gzip_of(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

/// The seed packages: valid pipelines and hostile shapes of every kind the reader
/// takes.
pub fn package_corpus() -> Vec<Upload> {
    let mut corpus = Vec::new();
    for dir in ["tests/pipelines", "tests/pipelines/invalid"] {
        let Ok(entries) = std::fs::read_dir(repo().join(dir)) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|entry| entry.path()).collect();
        paths.sort();
        for path in paths.into_iter().filter(|path| path.is_file()) {
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            if let Ok(bytes) = std::fs::read(&path) {
                corpus.push(upload(&name, bytes));
            }
        }
    }
    let hello = std::fs::read(repo().join("tests/pipelines/hello.yaml")).unwrap_or_default();
    // YAML alias bomb ("billion laughs").
    let mut laughs = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for level in 1..10 {
        let previous = (b'a' + level - 1) as char;
        let name = (b'a' + level) as char;
        let list = vec![format!("*{previous}"); 9].join(",");
        laughs.push_str(&format!("{name}: &{name} [{list}]\n"));
    }
    corpus.push(upload("laughs.yaml", laughs.into_bytes()));
    // Deep nesting, in YAML and JSON.
    let deep = 100_000;
    corpus.push(upload(
        "deep.yaml",
        format!("{}1{}", "[".repeat(deep), "]".repeat(deep)).into_bytes(),
    ));
    corpus.push(upload(
        "deep.json",
        format!("{}1{}", "{\"a\":".repeat(deep), "}".repeat(deep)).into_bytes(),
    ));
    corpus.push(upload("nested.yaml", nested_block_yaml(5_000).into_bytes()));
    // Huge and odd numbers where the spec has numbers and strings.
    for number in [
        "1e999999",
        "123456789012345678901234567890123456789",
        "-0",
        ".nan",
        "0x7fffffffffffffffff",
    ] {
        let text = String::from_utf8_lossy(&hello).replace("2.1.0", number);
        corpus.push(upload("numbers.yaml", text.into_bytes()));
    }
    corpus.push(upload(
        "long-string.yaml",
        format!("pipelineInfo: {{name: \"{}\"}}\n", "x".repeat(4 << 20)).into_bytes(),
    ));
    // Zip: normal, `..` names, absolute names, a symlink, a bomb, a zip in a zip.
    corpus.push(upload("p.zip", zip_of(&[("pipeline.yaml", &hello)])));
    corpus.push(upload(
        "dots.zip",
        zip_of(&[("../../pipeline.yaml", &hello)]),
    ));
    corpus.push(upload("abs.zip", zip_of(&[("/etc/pipeline.yaml", &hello)])));
    corpus.push(upload(
        "link.zip",
        zip_with_symlink("pipeline.yaml", "/etc/passwd"),
    ));
    let zeros = vec![b' '; 40 << 20];
    corpus.push(upload("bomb.zip", zip_of(&[("pipeline.yaml", &zeros)])));
    let inner = zip_of(&[("pipeline.yaml", &hello)]);
    corpus.push(upload("nested.zip", zip_of(&[("pipeline.zip", &inner)])));
    // Tar.gz: normal, `..`, symlink and hard link named pipeline.yaml, a bomb, a
    // gzip that is not a tar.
    corpus.push(upload(
        "p.tar.gz",
        tar_gz_of(&[("pipeline.yaml", &hello, None)]),
    ));
    corpus.push(upload(
        "dots.tar.gz",
        tar_gz_of(&[("../../pipeline.yaml", &hello, None)]),
    ));
    corpus.push(upload(
        "symlink.tar.gz",
        tar_gz_of(&[(
            "pipeline.yaml",
            b"",
            Some((tar::EntryType::Symlink, "/etc/passwd")),
        )]),
    ));
    corpus.push(upload(
        "hardlink.tar.gz",
        tar_gz_of(&[(
            "pipeline.yaml",
            b"",
            Some((tar::EntryType::Link, "../../etc/passwd")),
        )]),
    ));
    corpus.push(upload(
        "bomb.tar.gz",
        tar_gz_of(&[("pipeline.yaml", &zeros, None)]),
    ));
    corpus.push(upload("gzip-only.tar.gz", gzip_of(&zeros)));
    corpus
}

/// `a:\n  a:\n    a: ...` to `depth` levels, in block style.
fn nested_block_yaml(depth: usize) -> String {
    let mut text = String::new();
    for level in 0..depth {
        text.push_str(&" ".repeat(level));
        text.push_str("a:\n");
    }
    text.push_str(&" ".repeat(depth));
    text.push_str("1\n");
    text
}

/// Tokens a mutation inserts: YAML and JSON syntax, anchors, tags, numbers,
/// control bytes.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"\"",
    b"'",
    b"&a ",
    b"*a",
    b"<<: *a",
    b"!!binary ",
    b"!!python/object ",
    b"---\n",
    b"...\n",
    b"1e999999",
    b"-9223372036854775809",
    b"18446744073709551616",
    b"\x00",
    b"\xff\xfe",
    b"\n  ",
    b"\t",
    b"..",
    b"../",
    b"null",
    b"~",
    b"? ",
    b"|\n",
    b">\n",
    b"%YAML 1.2\n",
    b"#",
    b"PK\x03\x04",
    b"\x1f\x8b",
];

/// One mutation of `input`, sometimes spliced with `other`.
pub fn mutate(rng: &mut StdRng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    let rounds = rng.gen_range(1..=8);
    for _ in 0..rounds {
        let at = if out.is_empty() {
            0
        } else {
            rng.gen_range(0..=out.len())
        };
        match rng.gen_range(0..8) {
            0 if !out.is_empty() => {
                let index = rng.gen_range(0..out.len());
                out[index] ^= 1 << rng.gen_range(0..8);
            }
            1 => {
                let token = TOKENS[rng.gen_range(0..TOKENS.len())];
                out.splice(at..at, token.iter().copied());
            }
            2 if !out.is_empty() => {
                let end = (at + rng.gen_range(1..64)).min(out.len());
                out.drain(at.min(end)..end);
            }
            3 if !out.is_empty() => {
                let start = rng.gen_range(0..out.len());
                let end = (start + rng.gen_range(1..256)).min(out.len());
                let chunk: Vec<u8> = out[start..end].to_vec();
                let copies = rng.gen_range(1..16);
                for _ in 0..copies {
                    out.splice(at..at, chunk.iter().copied());
                }
            }
            4 => out.truncate(at),
            5 if !other.is_empty() => {
                let start = rng.gen_range(0..other.len());
                let end = (start + rng.gen_range(1..512)).min(other.len());
                out.splice(at..at, other[start..end].iter().copied());
            }
            6 => {
                let byte = rng.gen::<u8>();
                out.splice(at..at, std::iter::repeat_n(byte, rng.gen_range(1..64)));
            }
            _ => {
                let nesting = rng.gen_range(1..200);
                let open = if rng.gen() { b'[' } else { b'{' };
                out.splice(at..at, std::iter::repeat_n(open, nesting));
            }
        }
    }
    out
}

/// A mutated upload: the bytes mutated as they are, or (for text) mutated and
/// then packed into a zip or tar.gz so the archive layer passes them on.
pub fn mutated_upload(rng: &mut StdRng, corpus: &[Upload]) -> Upload {
    let base = &corpus[rng.gen_range(0..corpus.len())];
    let other = &corpus[rng.gen_range(0..corpus.len())];
    // Bombs are kept as they are; mutating 64 MiB each time would only be slow.
    if base.bytes.len() > (1 << 20) {
        return base.clone();
    }
    let bytes = mutate(rng, &base.bytes, &other.bytes);
    let is_text = base.name.ends_with(".yaml") || base.name.ends_with(".json");
    match (is_text, rng.gen_range(0..6)) {
        (true, 0) => upload("m.zip", zip_of(&[("pipeline.yaml", &bytes)])),
        (true, 1) => upload("m.tar.gz", tar_gz_of(&[("pipeline.yaml", &bytes, None)])),
        (_, 2) => upload("m.bin", bytes),
        _ => upload(&base.name, bytes),
    }
}

/// CEL expressions of the shapes the SDK compiles, and hostile ones.
pub fn cel_corpus() -> Vec<String> {
    let mut corpus: Vec<String> = [
        "inputs.parameter_values['pipelinechannel--flip-coin-Output'] == 'heads'",
        "int(inputs.parameter_values['pipelinechannel--n']) > 2",
        "!(inputs.parameter_values['a'] == 'x') && inputs.parameter_values['b'] != 'y'",
        "inputs.artifacts['pipelinechannel--m'].artifacts[0].metadata['accuracy'] > 0.5",
        "parseJson(string_value)['key']",
        "string_value",
        "size(string_value) > 3 ? 'long' : 'short'",
        "[1, 2, 3].map(x, x * 2)",
        "{'a': 1}.a + 1",
        "double(string_value) / 0.0",
        "9223372036854775807 + 1",
        "-9223372036854775808 - 1",
        "1 / 0",
        "'\\u0000' + '\\xff'",
        "b'\\xff'",
    ]
    .iter()
    .map(|text| text.to_string())
    .collect();
    corpus.push(format!("{}true{}", "(".repeat(10_000), ")".repeat(10_000)));
    corpus.push(format!("{}1", "-".repeat(10_000)));
    corpus.push(vec!["1"; 5_000].join(" + "));
    corpus.push(format!("string_value{}", ".a".repeat(5_000)));
    corpus.push(format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000)));
    corpus.push(format!("'{}'", "x".repeat(1 << 20)));
    corpus
}

/// Filters as the API takes them (the Filter message's JSON), valid and hostile.
pub fn filter_corpus() -> Vec<String> {
    let mut corpus: Vec<String> = [
        r#"{"predicates":[{"key":"display_name","operation":"EQUALS","string_value":"x"}]}"#,
        r#"{"predicates":[{"key":"created_at","operation":"GREATER_THAN","timestamp_value":"2020-01-01T00:00:00Z"}]}"#,
        r#"{"predicates":[{"key":"state","operation":"IN","string_values":{"values":["SUCCEEDED","FAILED"]}}]}"#,
        r#"{"predicates":[{"key":"name","operation":"IS_SUBSTRING","string_value":"%_'\"\\"}]}"#,
        r#"{"predicates":[{"key":"storage_state","operation":"NOT_EQUALS","string_value":"ARCHIVED"}]}"#,
        r#"{"predicates":[{"key":"id","operation":"LESS_THAN_EQUALS","int_value":9223372036854775807}]}"#,
        r#"{"predicates":[{"key":"x'; DROP TABLE runs; --","operation":"EQUALS","string_value":"1"}]}"#,
        r#"{"predicates":[{"key":"display_name","operation":"EQUALS","long_value":"99999999999999999999999"}]}"#,
        r#"{"predicates":[]}"#,
        "not json",
    ]
    .iter()
    .map(|text| text.to_string())
    .collect();
    let many: Vec<String> = (0..300)
        .map(|i| format!(r#"{{"key":"display_name","operation":"EQUALS","string_value":"{i}"}}"#))
        .collect();
    corpus.push(format!(r#"{{"predicates":[{}]}}"#, many.join(",")));
    corpus.push(format!("{}{}", "[".repeat(5_000), "]".repeat(5_000)));
    corpus
}
