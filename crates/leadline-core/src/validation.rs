//! Validation errors, each tied to the JSON pointer of the field at fault.

use serde::Serialize;

/// One field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// JSON pointer into the request body, e.g. `/guests/adults`.
    pub pointer: String,
    /// What is wrong, for a person.
    pub detail: String,
}

/// Every validation failure of one request, so a client can fix them all at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    /// No errors yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// One error.
    pub fn single(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        let mut e = Self::new();
        e.add(pointer, detail);
        e
    }

    /// Records an error.
    pub fn add(&mut self, pointer: impl Into<String>, detail: impl Into<String>) {
        self.0.push(FieldError {
            pointer: pointer.into(),
            detail: detail.into(),
        });
    }

    /// Takes the result of a check, recording its error and keeping its value.
    pub fn check<T>(&mut self, pointer: &str, r: Result<T, String>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(detail) => {
                self.add(pointer, detail);
                None
            }
        }
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(v)` when nothing was recorded, else the errors.
    pub fn finish<T>(self, v: impl FnOnce() -> T) -> Result<T, ValidationErrors> {
        if self.is_empty() { Ok(v()) } else { Err(self) }
    }
}

impl std::fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", e.pointer, e.detail)?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// What a date outside [`date_in_range`] is told.
pub const DATE_RANGE: &str = "must be a date from 2000-01-01 to 2199-12-31";

/// Whether a date is one Leadline takes: from 2000-01-01 to 2199-12-31. Every date
/// field and parameter is checked against it, so no date arithmetic can overflow.
pub fn date_in_range(d: chrono::NaiveDate) -> bool {
    use chrono::Datelike;
    (2000..=2199).contains(&d.year())
}

/// Deserialises a patch field that may be absent (keep: with `#[serde(default)]`
/// it stays `None`), `null` (clear: `Some(None)`) or a value (set: `Some(Some(v))`).
pub fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    serde::Deserialize::deserialize(d).map(Some)
}
