//! Cursor pagination shared by every list.

use serde::Serialize;

/// Default page size.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page size.
pub const MAX_LIMIT: u32 = 200;

/// Where a list page starts and how long it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Items after this id (in the list's order), or from the start.
    pub after: Option<String>,
    /// Page size, 1 to [`MAX_LIMIT`].
    pub limit: u32,
}

impl PageRequest {
    /// Validates `limit` and `cursor` (to clients an opaque token; it is the id of
    /// the last item of the previous page, so any id-shaped value is a position in
    /// the list and every other value is refused).
    pub fn parse(limit: Option<u32>, cursor: Option<&str>) -> Result<Self, crate::ValidationErrors> {
        let mut errors = crate::ValidationErrors::new();
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            errors.add("/limit", format!("must be from 1 to {MAX_LIMIT}"));
        }
        let after = match cursor {
            None | Some("") => None,
            Some(c) if crate::id::is_id_shaped(c) => Some(c.to_owned()),
            Some(_) => {
                errors.add("/cursor", "is not a cursor returned by this API");
                None
            }
        };
        errors.finish(|| Self { after, limit })
    }

    /// The cursor naming the item `id` as the last one seen.
    pub fn cursor_for(id: &str) -> String {
        id.to_owned()
    }
}

/// One page of a list.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    /// The items.
    pub data: Vec<T>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` items fetched: the extra one only
    /// tells that another page exists.
    pub fn from_overfetch(mut items: Vec<T>, limit: u32, id_of: impl Fn(&T) -> &str) -> Self {
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_cursor = if more {
            items.last().map(|t| PageRequest::cursor_for(id_of(t)))
        } else {
            None
        };
        Self {
            data: items,
            next_cursor,
        }
    }
}
