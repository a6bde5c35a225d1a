//! Leadline's server: the HTTP API, configuration, startup and the CLI.

pub mod app;
pub mod auth;
pub mod claims;
pub mod cli;
pub mod clock;
pub mod config;
pub mod cors;
pub mod demo;
pub mod effects;
pub mod error;
pub mod events;
pub mod extract;
pub mod http;
pub mod mail;
pub mod maintenance;
pub mod metrics;
pub mod middleware;
pub mod net;
pub mod outbound;
pub mod ratelimit;
pub mod routes;
pub mod state;
pub mod telemetry;
pub mod usecases;
pub mod worker;
