//! PII redaction for logs, audit details and admin views.

/// `maria@example.com` becomes `m***@example.com`.
pub fn email(e: &str) -> String {
    match e.rsplit_once('@') {
        Some((local, domain)) => {
            let first = local.chars().next().map(String::from).unwrap_or_default();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

/// `+306941234567` becomes `+30********67`: the `+`, the first two and the last
/// two digits stay.
pub fn phone(p: &str) -> String {
    let chars: Vec<char> = p.chars().collect();
    let n = chars.len();
    if n <= 5 {
        return "*".repeat(n);
    }
    let mut out = String::with_capacity(n);
    for (i, c) in chars.iter().enumerate() {
        if i < 3 || i >= n - 2 {
            out.push(*c)
        } else {
            out.push('*')
        }
    }
    out
}

/// Redacts personal data in a JSON value: values under keys naming an email, a
/// phone, a name or free text are masked, and any other string that looks like an
/// email address is masked too.
pub fn json(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = k.to_ascii_lowercase();
                    let masked = match v {
                        Value::String(s) if key.contains("email") || key == "reply_to" => Value::String(email(s)),
                        Value::String(s) if key.contains("phone") => Value::String(phone(s)),
                        Value::String(_)
                            if matches!(
                                key.as_str(),
                                "name" | "message" | "notes" | "assigned_to" | "experience"
                            ) =>
                        {
                            Value::String("[redacted]".into())
                        }
                        other => json(other),
                    };
                    (k.clone(), masked)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(json).collect()),
        Value::String(s) if looks_like_email(s) => Value::String(email(s)),
        other => other.clone(),
    }
}

fn looks_like_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((l, d)) => !l.is_empty() && d.contains('.') && !s.contains(char::is_whitespace),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_redaction() {
        let v = serde_json::json!({"email": "maria@example.com", "phone_e164": "+306941234567", "name": "Maria",
            "nested": [{"contact": "nikos@example.com"}], "status": "new", "notification_emails": ["a@b.co"]});
        let r = super::json(&v);
        let text = r.to_string();
        assert!(
            !text.contains("maria@")
                && !text.contains("1234567")
                && !text.contains("Maria")
                && !text.contains("nikos@"),
            "{text}"
        );
        assert!(!text.contains("a@b.co"), "{text}");
        assert_eq!(r["status"], "new");
    }

    #[test]
    fn examples() {
        assert_eq!(super::email("maria@example.com"), "m***@example.com");
        // The country code and the last two digits stay; every other digit is masked.
        assert_eq!(super::phone("+306941234567"), "+30********67");
    }
}
