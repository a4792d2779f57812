//! What refusing an option looks like: [`SpecError`], and the checks every options type uses.

/// Why a job spec was refused. The message is safe to return to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

/// Checks that an optional number lies in a closed range (and is finite).
pub(crate) fn in_range(
    name: &str,
    value: Option<f64>,
    min: f64,
    max: f64,
) -> Result<(), SpecError> {
    match value {
        Some(v) if !(v.is_finite() && (min..=max).contains(&v)) => {
            Err(SpecError(format!("{name} must be between {min} and {max}")))
        }
        _ => Ok(()),
    }
}
