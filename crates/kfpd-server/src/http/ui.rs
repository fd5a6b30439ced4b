//! The web UI: a page and its scripts, embedded in the binary so `kfpd serve` needs
//! nothing installed beside it. The page routes on the URL fragment (`#/runs/...`),
//! which never reaches the server, so `/` is the only page path.

use std::sync::OnceLock;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::openapi::{Page, Routes};
use crate::error::{Code, Error};
use crate::service::Api;

/// One embedded file: its name under `/ui/`, content type and bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("../../ui/index.html"),
};

/// Scripts load in this order (index.html): helpers, graph, previews, run page, app.
const ASSETS: &[Asset] = &[
    script("core.js", include_bytes!("../../ui/core.js")),
    script("graph.js", include_bytes!("../../ui/graph.js")),
    script("preview.js", include_bytes!("../../ui/preview.js")),
    script("run.js", include_bytes!("../../ui/run.js")),
    script("app.js", include_bytes!("../../ui/app.js")),
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../ui/app.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../ui/favicon.svg"),
    },
];

const fn script(name: &'static str, body: &'static [u8]) -> Asset {
    Asset {
        name,
        content_type: "text/javascript; charset=utf-8",
        body,
    }
}

/// Scripts and styles only from this server; no inline code, no frames.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

pub fn routes(routes: Routes) -> Routes {
    routes.get("/", index).get("/ui/{name}", asset)
}

/// The page's mark of the server's mode, as index.html has it.
const SINGLE_USER_MARK: &str = r#"<meta name="kfpd-multi-user" content="false">"#;

/// index.html as served in multi-user mode: the page learns the mode from it
/// without a request of its own before its first view.
fn multi_user_page() -> &'static (Vec<u8>, String) {
    static PAGE: OnceLock<(Vec<u8>, String)> = OnceLock::new();
    PAGE.get_or_init(|| {
        let text = String::from_utf8_lossy(INDEX.body).replace(
            SINGLE_USER_MARK,
            r#"<meta name="kfpd-multi-user" content="true">"#,
        );
        let body = text.into_bytes();
        let etag = format!("\"{:016x}\"", fnv1a(&body));
        (body, etag)
    })
}

async fn index(State(api): State<Api>, headers: HeaderMap) -> Page {
    if api.settings().multi_user {
        let (body, etag) = multi_user_page();
        return Page(serve(&INDEX, body, etag, &headers));
    }
    Page(serve(&INDEX, INDEX.body, etag_of(&INDEX), &headers))
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Page {
    Page(match ASSETS.iter().find(|asset| asset.name == name) {
        Some(asset) => serve(asset, asset.body, etag_of(asset), &headers),
        None => Error::new(Code::NotFound, format!("no UI asset named {name:?}")).into_response(),
    })
}

/// Answers an asset with a content-derived ETag and `no-cache`: browsers keep the
/// bytes but revalidate each load (a 304 when unchanged), so an upgraded binary's
/// page and scripts are never mixed with stale ones.
fn serve(asset: &Asset, body: &'static [u8], etag: &str, headers: &HeaderMap) -> Response {
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            body,
        )
            .into_response()
    };
    let out = response.headers_mut();
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(etag) {
        out.insert(header::ETAG, value);
    }
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.name == INDEX.name {
        out.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
    }
    response
}

/// The quoted ETag of an asset, an FNV-1a hash of its bytes computed once.
fn etag_of(asset: &Asset) -> &'static str {
    static TAGS: OnceLock<Vec<(&'static str, String)>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        std::iter::once(&INDEX)
            .chain(ASSETS.iter())
            .map(|asset| (asset.name, format!("\"{:016x}\"", fnv1a(asset.body))))
            .collect()
    });
    tags.iter()
        .find(|(name, _)| *name == asset.name)
        .map(|(_, tag)| tag.as_str())
        .unwrap_or("\"0\"")
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_differ_per_asset_and_are_quoted() {
        let tags: Vec<&str> = std::iter::once(&INDEX)
            .chain(ASSETS.iter())
            .map(etag_of)
            .collect();
        for tag in &tags {
            assert!(tag.starts_with('"') && tag.ends_with('"') && tag.len() == 18);
        }
        let mut unique = tags.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), tags.len());
    }

    #[test]
    fn the_multi_user_page_differs_in_its_mark_alone() {
        let single = std::str::from_utf8(INDEX.body).expect("utf-8");
        assert_eq!(single.matches(SINGLE_USER_MARK).count(), 1);
        let (multi, etag) = multi_user_page();
        let multi = std::str::from_utf8(multi).expect("utf-8");
        assert_eq!(
            multi.replace(r#"content="true">"#, r#"content="false">"#),
            single
        );
        assert_ne!(etag, etag_of(&INDEX));
    }
}
