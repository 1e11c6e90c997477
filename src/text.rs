//! Untrusted text in messages: every error and log line that quotes a
//! client's or a file's value goes through [`quote_untrusted`].

/// Error messages quote the offending value, but a multi-megabyte "digest"
/// must not become a multi-megabyte message.
/// Untrusted text for an error message: cut to a readable length, with
/// control characters escaped so that a message never drives a terminal.
pub fn quote_untrusted(input: &str) -> String {
    const MAX: usize = 200;
    let mut end = input.len().min(MAX);
    while !input.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + 16);
    for c in input[..end].chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if end < input.len() {
        out.push_str(&format!("… ({} bytes)", input.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::quote_untrusted;

    #[test]
    fn long_values_are_cut_and_control_characters_escaped() {
        let long = "a".repeat(1000);
        let q = quote_untrusted(&long);
        assert!(q.starts_with(&"a".repeat(200)), "{q}");
        assert!(q.ends_with("… (1000 bytes)"), "{q}");
        assert_eq!(quote_untrusted("a\x1b[31mb\n"), "a\\u{1b}[31mb\\n");
        // A cut never splits a character.
        let wide = "é".repeat(150);
        assert!(quote_untrusted(&wide).starts_with(&"é".repeat(100)));
    }
}
