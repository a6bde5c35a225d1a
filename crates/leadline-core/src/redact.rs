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

#[cfg(test)]
mod tests {
    #[test]
    fn examples() {
        assert_eq!(super::email("maria@example.com"), "m***@example.com");
        // The country code and the last two digits stay; every other digit is masked.
        assert_eq!(super::phone("+306941234567"), "+30********67");
    }
}
