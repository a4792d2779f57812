//! End-to-end tests of the engine on signals generated here (no downloaded fixtures).

mod analysis;
mod common;
mod convert;
mod corpus;
mod decode;
mod edits;
mod fidelity;
mod formats;
mod hostile;
mod limits;
mod loudness;
