//! `ai_batch_core`: the plain-Rust engine of the `ai_batch` DuckDB extension.
//!
//! Nothing in this crate knows about DuckDB. The extension crate turns SQL
//! parameters into the plain structs defined here and writes the results back.

pub mod anthropic;
pub mod cost;
pub mod http;
pub mod lifecycle;
pub mod models;
pub mod openai;
pub mod pretok;
pub mod processor;
pub mod progress;
pub mod provider;
pub mod providers;
pub mod requests;
pub mod results;
pub mod text;
