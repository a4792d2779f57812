//! Cursor pagination of listings: `limit` and `cursor` parsed once for every list route.

use std::str::FromStr;

use crate::AppError;

/// Largest page of a listing.
pub const MAX_PAGE: u32 = 100;
/// Page size when the client names none.
pub const DEFAULT_PAGE: u32 = 20;

/// `limit` and `cursor` of a listing whose rows have ids of type `C`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageQuery<C> {
    pub limit: u32,
    pub cursor: Option<C>,
}

impl<C> Default for PageQuery<C> {
    fn default() -> Self {
        Self {
            limit: DEFAULT_PAGE,
            cursor: None,
        }
    }
}

impl<C: FromStr> PageQuery<C> {
    /// Takes a `limit` or `cursor` query parameter (`true`), or leaves another one to the
    /// caller (`false`). `what` names the rows in messages (`job`, `upload`). A bad value is a
    /// `400`.
    pub fn take(&mut self, name: &str, value: &str, what: &str) -> Result<bool, AppError> {
        match name {
            "limit" => {
                self.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        AppError::bad_request(format!("limit must be 1 to {MAX_PAGE}"))
                    })?
            }
            "cursor" => {
                self.cursor = Some(
                    value
                        .parse()
                        .map_err(|_| AppError::bad_request(format!("cursor is not a {what} id")))?,
                )
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The store's page: one row more than asked, to know whether another page follows.
    pub fn store_page(&self) -> audiomill_store::Page<C>
    where
        C: Copy,
    {
        audiomill_store::Page {
            limit: self.limit + 1,
            before: self.cursor,
        }
    }

    /// Cuts the extra row of [`PageQuery::store_page`] and gives the next cursor.
    pub fn split<T>(&self, mut rows: Vec<T>, id: impl Fn(&T) -> C) -> (Vec<T>, Option<C>) {
        if rows.len() > self.limit as usize {
            rows.truncate(self.limit as usize);
            let next = rows.last().map(id);
            (rows, next)
        } else {
            (rows, None)
        }
    }
}

/// An unknown query parameter of a listing: a `400` naming the ones it takes.
pub fn unknown_parameter(name: &str, expected: &str) -> AppError {
    AppError::bad_request(format!(
        "unknown query parameter {:?}; expected {expected}",
        name.chars().take(40).collect::<String>()
    ))
}
