//! codebox: a code interpreter that runs every piece of Python in its own locked-down,
//! single-use Docker container.
#![forbid(unsafe_code)]

pub mod app;
pub mod config;
pub mod container;
pub mod conversations;
pub mod data_dir;
pub mod discord;
pub mod doctor;
pub mod executor_api;
pub mod filetypes;
pub mod llm;
pub mod no_room;
pub mod packages;
pub mod render;
pub mod run_result;
pub mod sandbox;
pub mod service;
pub mod staging;
pub mod store;
pub mod terminal;
