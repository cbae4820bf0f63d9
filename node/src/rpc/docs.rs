//! The RPC reference in Markdown (docs/rpc.md), written from the OpenAPI document that
//! the handlers' annotations generate: `infer-node openapi --markdown` prints it, and a
//! test keeps docs/rpc.md equal to it, so the reference cannot drift from the code.

use serde_json::Value;

/// The OpenAPI document as JSON.
pub fn openapi_json() -> Value {
    serde_json::to_value(<super::ApiDoc as utoipa::OpenApi>::openapi()).unwrap_or(Value::Null)
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// One cell of a Markdown table: no line breaks, no bare pipes.
fn cell(text: &str) -> String {
    text.replace('\n', " ").replace('|', "\\|")
}

/// Renders `doc` (an OpenAPI 3 document as JSON) as the RPC reference.
pub fn markdown(doc: &Value) -> String {
    let mut out = String::from(
        "# RPC reference\n\n\
         <!-- Written by `infer-node openapi --markdown` from the OpenAPI document the code \
         generates; a test fails when it differs. Edit the handlers' annotations, not this file. -->\n\n\
         REST under `/v2` on `rpc.listen` (loopback by default), JSON in and out. Every \
         refusal is a 4xx (or 503 when the engine's queue is full) with a body \
         `{\"error\": \"...\"}` that says what was wrong. The same document as OpenAPI 3: \
         `GET /v2/openapi.json` on a running node, or `infer-node openapi`.\n",
    );
    let empty = serde_json::Map::new();
    let paths = doc["paths"].as_object().unwrap_or(&empty);
    // Operations by tag, tags in alphabetical order, paths in order within each.
    let mut by_tag: std::collections::BTreeMap<String, Vec<(&str, &str, &Value)>> =
        std::collections::BTreeMap::new();
    for (path, item) in paths {
        for method in METHODS {
            let op = &item[method];
            if op.is_null() {
                continue;
            }
            let tag = op["tags"][0].as_str().unwrap_or("other").to_string();
            by_tag.entry(tag).or_default().push((method, path, op));
        }
    }
    for (tag, ops) in &by_tag {
        out.push_str(&format!("\n## {tag}\n"));
        for (method, path, op) in ops {
            out.push_str(&format!("\n### `{} {path}`\n\n", method.to_uppercase()));
            for key in ["summary", "description"] {
                if let Some(text) = op[key].as_str() {
                    out.push_str(&format!("{text}\n\n"));
                }
            }
            if op["security"].is_array() {
                out.push_str("Needs `Authorization: Bearer <rpc.admin_token>`.\n\n");
            }
            if let Some(params) = op["parameters"].as_array() {
                out.push_str(
                    "| parameter | in | required | description |\n| --- | --- | --- | --- |\n",
                );
                for p in params {
                    out.push_str(&format!(
                        "| `{}` | {} | {} | {} |\n",
                        p["name"].as_str().unwrap_or(""),
                        p["in"].as_str().unwrap_or(""),
                        if p["required"] == true { "yes" } else { "no" },
                        cell(p["description"].as_str().unwrap_or("")),
                    ));
                }
                out.push('\n');
            }
            let body = &op["requestBody"];
            if !body.is_null() {
                let types: Vec<&str> = body["content"]
                    .as_object()
                    .map(|c| c.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                out.push_str(&format!(
                    "Body ({}): {}\n\n",
                    types.join(", "),
                    body["description"].as_str().unwrap_or("")
                ));
            }
            out.push_str("| status | answer |\n| --- | --- |\n");
            if let Some(responses) = op["responses"].as_object() {
                for (status, r) in responses {
                    let types: Vec<&str> = r["content"]
                        .as_object()
                        .map(|c| c.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    let kind = if types.is_empty() {
                        String::new()
                    } else {
                        format!(" (`{}`)", types.join("`, `"))
                    };
                    out.push_str(&format!(
                        "| {status} | {}{kind} |\n",
                        cell(r["description"].as_str().unwrap_or(""))
                    ));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RPC_MD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/rpc.md");

    /// docs/rpc.md is what the code generates. After changing an endpoint, rewrite it
    /// with `infer-node openapi --markdown > docs/rpc.md`.
    #[test]
    fn docs_rpc_md_matches_the_openapi_document() {
        let written = std::fs::read_to_string(RPC_MD).unwrap_or_default();
        let generated = markdown(&openapi_json());
        assert!(
            written == generated,
            "docs/rpc.md differs from the OpenAPI document: run `infer-node openapi --markdown > docs/rpc.md`"
        );
    }

    /// Every path the router serves is in the OpenAPI document (but the document
    /// itself), and the document names no path the router does not serve.
    #[test]
    fn the_openapi_document_covers_every_routed_path() {
        let source = include_str!("../rpc.rs");
        let router = source
            .split("pub fn router")
            .nth(1)
            .and_then(|rest| rest.split(".fallback(").next())
            .unwrap();
        let routed: std::collections::BTreeSet<&str> = router
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|s| s.starts_with('/'))
            .filter(|s| *s != "/v2/openapi.json")
            .collect();
        let doc = openapi_json();
        let documented: std::collections::BTreeSet<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert!(routed.len() > 20, "{routed:?}");
        assert_eq!(routed, documented);
        let generated = markdown(&doc);
        assert!(generated.contains("### `POST /v2/inference`"));
        assert!(generated.contains("Needs `Authorization: Bearer"));
        assert!(
            generated.contains("| 413 |"),
            "bad-input answers are listed"
        );
    }
}
