//! REST routes the web UI's run page uses: a run's nodes (tasks with kinds and
//! edges) and one node's record. The run's changes stream from `events.rs`.

use axum::extract::{Path, State};
use axum::Json;

use super::openapi::Routes;
use crate::error::Result;
use crate::service::{Api, ListNodesResponse, NodeDetail};

pub fn routes(routes: Routes) -> Routes {
    routes
        .get("/apis/v2beta1/runs/{run_id}/nodes", list_nodes)
        .get("/apis/v2beta1/runs/{run_id}/nodes/{node_id}", get_node)
}

async fn list_nodes(
    State(api): State<Api>,
    Path(run_id): Path<String>,
) -> Result<Json<ListNodesResponse>> {
    Ok(Json(api.list_nodes(&run_id).await?))
}

async fn get_node(
    State(api): State<Api>,
    Path((run_id, node_id)): Path<(String, String)>,
) -> Result<Json<NodeDetail>> {
    Ok(Json(api.get_node(&run_id, &node_id).await?))
}
