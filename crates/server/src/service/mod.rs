//! The work behind the handlers: each handler calls one function here.

pub mod admin;
pub mod conditional;
pub mod events;
pub mod files;
pub mod health;
pub mod jobs;
pub mod page;
pub mod quota;
pub mod uploads;
pub mod url_inputs;
pub mod usage;
