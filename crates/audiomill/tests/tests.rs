//! End-to-end tests of the audiomill binary: each starts the real server on a random port with
//! a temp data directory, and talks to it over HTTP. Modules read like a table of contents.

mod support;

mod auth;
mod cli;
mod execution;
mod files;
mod first_use;
mod jobs;
mod ops;
mod plans;
mod ratelimit;
mod separate;
mod uploads;
mod urls;
