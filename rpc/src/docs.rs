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
                    "Body ({}{}): {}\n\n",
                    types.join(", "),
                    schema_names(&body["content"]),
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
                        format!(" (`{}`{})", types.join("`, `"), schema_names(&r["content"]))
                    };
                    out.push_str(&format!(
                        "| {status} | {}{kind} |\n",
                        cell(r["description"].as_str().unwrap_or(""))
                    ));
                }
            }
        }
    }
    schemas(doc, &mut out);
    out
}

/// The schema a `content` object's media types name: ": [Name](#name)", a list of one
/// ("[Name]"), or a plain type; nothing when none is given.
fn schema_names(content: &Value) -> String {
    let names: Vec<String> = content
        .as_object()
        .into_iter()
        .flat_map(|c| c.values())
        .filter_map(|media| type_name(&media["schema"]))
        .collect();
    if names.is_empty() {
        String::new()
    } else {
        format!(": {}", names.join(", "))
    }
}

/// A schema as a short type: a link to a named schema, `[T]` for a list, or its type.
fn type_name(schema: &Value) -> Option<String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next()?;
        return Some(format!("[{name}](#{})", name.to_lowercase()));
    }
    if let Some(alternatives) = schema["oneOf"].as_array() {
        let names: Vec<String> = alternatives.iter().filter_map(type_name).collect();
        return Some(names.join(" or "));
    }
    match &schema["type"] {
        Value::String(t) if t == "array" => Some(format!("[{}]", type_name(&schema["items"])?)),
        Value::String(t) => Some(t.clone()),
        // OpenAPI 3.1 writes a nullable type as ["string", "null"].
        Value::Array(types) => Some(
            types
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" or "),
        ),
        _ => Some("any JSON".to_string()),
    }
}

/// The bodies' schemas, each with its fields.
fn schemas(doc: &Value, out: &mut String) {
    let Some(schemas) = doc["components"]["schemas"].as_object() else {
        return;
    };
    out.push_str("\n## Bodies\n\nAmounts are base units (`*_units`; 1 FAI = 10^8), ids and hashes hex, addresses bech32m.\n");
    for (name, schema) in schemas {
        out.push_str(&format!("\n### {name}\n\n"));
        if let Some(text) = schema["description"].as_str() {
            out.push_str(&format!("{text}\n\n"));
        }
        if let Some(alternatives) = schema["oneOf"].as_array() {
            let names: Vec<String> = alternatives.iter().filter_map(type_name).collect();
            out.push_str(&format!("One of: {}.\n", names.join(", ")));
            continue;
        }
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let Some(fields) = schema["properties"].as_object() else {
            continue;
        };
        out.push_str("| field | type | required | description |\n| --- | --- | --- | --- |\n");
        for (field, f) in fields {
            // A field that refers to another schema carries its description beside it.
            let target = f["oneOf"]
                .as_array()
                .and_then(|a| a.iter().find(|s| s["$ref"].is_string()))
                .unwrap_or(f);
            out.push_str(&format!(
                "| `{field}` | {} | {} | {} |\n",
                cell(&type_name(target).unwrap_or_default()),
                if required.contains(&field.as_str()) {
                    "yes"
                } else {
                    "no"
                },
                cell(
                    f["description"]
                        .as_str()
                        .or_else(|| target["description"].as_str())
                        .unwrap_or("")
                ),
            ));
        }
    }
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

    /// Every path the router serves is in the OpenAPI document, and the document names
    /// no path the router does not serve.
    #[test]
    fn the_openapi_document_covers_every_routed_path() {
        let source = include_str!("lib.rs");
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

    /// What a client needs to build a valid request and read every answer: each
    /// operation's request body (POST, but the bodiless shutdown) and each of its
    /// responses, refusals included, carry a schema, and every schema they name exists.
    #[test]
    fn every_request_and_response_body_has_a_schema() {
        let doc = openapi_json();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let mut refs = Vec::new();
        collect_refs(&doc["paths"], &mut refs);
        collect_refs(&doc["components"], &mut refs);
        for r in &refs {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or(r);
            assert!(schemas.contains_key(name), "{r} names no schema");
        }
        let mut operations = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in METHODS {
                let op = &item[method];
                if op.is_null() {
                    continue;
                }
                operations += 1;
                let at = format!("{} {path}", method.to_uppercase());
                if method == "post" && path != "/v2/admin/shutdown" {
                    let content = op["requestBody"]["content"].as_object();
                    let content = content.unwrap_or_else(|| panic!("{at}: no request body"));
                    for (media, m) in content {
                        assert!(
                            m["schema"].is_object(),
                            "{at}: request {media} has no schema"
                        );
                    }
                }
                let responses = op["responses"].as_object().unwrap();
                assert!(responses.contains_key("200"), "{at}: no 200 answer");
                for (status, r) in responses {
                    let content = r["content"].as_object();
                    let content =
                        content.unwrap_or_else(|| panic!("{at}: answer {status} has no body"));
                    assert!(!content.is_empty(), "{at}: answer {status} has no body");
                    for (media, m) in content {
                        assert!(
                            m["schema"].is_object(),
                            "{at}: answer {status} ({media}) has no schema"
                        );
                        if !status.starts_with('2') {
                            assert_eq!(
                                m["schema"]["$ref"], "#/components/schemas/ErrorBody",
                                "{at}: refusal {status} is not an ErrorBody"
                            );
                        }
                    }
                }
            }
        }
        assert!(operations > 20, "{operations} operations");
    }

    fn collect_refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("$ref", Value::String(r)) => out.push(r.clone()),
                        _ => collect_refs(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }
}
