//! The work behind the handlers: each handler calls one function here.

pub mod admin;
pub mod conditional;
pub mod files;
pub mod jobs;
pub mod page;
pub mod quota;
pub mod uploads;
pub mod url_inputs;
