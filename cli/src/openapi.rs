//! `infer-node openapi`: the RPC's OpenAPI document, or its reference as Markdown.

use anyhow::Result;
use fai_rpc as rpc;

pub fn run(markdown: bool) -> Result<()> {
    let doc = rpc::docs::openapi_json();
    if markdown {
        print!("{}", rpc::docs::markdown(&doc));
    } else {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    Ok(())
}
