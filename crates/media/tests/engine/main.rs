//! End-to-end tests of the engine on signals generated here (no downloaded fixtures).

mod common;
mod convert;
mod decode;
mod hostile;
mod limits;
mod loudness;
