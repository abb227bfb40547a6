//! Which load balancer host patterns can match a preview host.
//!
//! A listener rule's `host-header` values are patterns where `*` stands for any run of
//! characters and `?` for one, compared without regard to case. A preview host is
//! `<label>.<suffix>`, the label being letters, digits and `-`. A rule evaluated before the
//! wildcard rule takes the preview hosts its patterns can match, so the question is whether the
//! two languages meet; that is decided exactly, not by trying sample hosts.

use std::collections::HashSet;

/// One element of a host pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Glob {
    Char(u8),
    /// `?`: any one character.
    One,
    /// `*`: any run of characters, possibly empty.
    Any,
}

/// One element of the preview host language `<label>.<suffix>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Host {
    Char(u8),
    /// One character of a DNS label.
    Label,
    /// Any run of DNS label characters, possibly empty.
    Labels,
}

fn is_label_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-'
}

fn glob(pattern: &str) -> Vec<Glob> {
    pattern
        .bytes()
        .map(|c| match c {
            b'*' => Glob::Any,
            b'?' => Glob::One,
            c => Glob::Char(c.to_ascii_lowercase()),
        })
        .collect()
}

/// The host pattern of the wildcard rule for `suffix`.
pub fn wildcard(suffix: &str) -> String {
    format!("*.{suffix}")
}

/// Whether `pattern` is the wildcard pattern of `suffix` (case does not matter).
pub fn is_wildcard(pattern: &str, suffix: &str) -> bool {
    pattern.trim().eq_ignore_ascii_case(&wildcard(suffix))
}

/// Whether some preview host `<label>.<suffix>` matches `pattern`.
pub fn may_match_preview_host(pattern: &str, suffix: &str) -> bool {
    let pattern = glob(pattern.trim());
    let mut host = vec![Host::Label, Host::Labels, Host::Char(b'.')];
    host.extend(suffix.bytes().map(|c| Host::Char(c.to_ascii_lowercase())));
    let mut seen = HashSet::new();
    let mut stack = vec![(0usize, 0usize)];
    while let Some((i, j)) = stack.pop() {
        if !seen.insert((i, j)) {
            continue;
        }
        if i == pattern.len() && j == host.len() {
            return true;
        }
        // Either side's "any run" may stop here.
        if pattern.get(i) == Some(&Glob::Any) {
            stack.push((i + 1, j));
        }
        if host.get(j) == Some(&Host::Labels) {
            stack.push((i, j + 1));
        }
        // Or both take one character that each accepts; a run stays where it is.
        if let (Some(p), Some(h)) = (pattern.get(i), host.get(j)) {
            let both_accept = match (p, h) {
                (Glob::Char(a), Host::Char(b)) => a == b,
                (Glob::Char(a), _) => is_label_char(*a),
                (Glob::One | Glob::Any, _) => true,
            };
            let next_i = if *p == Glob::Any { i } else { i + 1 };
            let next_j = if *h == Host::Labels { j } else { j + 1 };
            if both_accept && (next_i, next_j) != (i, j) {
                stack.push((next_i, next_j));
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUFFIX: &str = "uat.example.com";

    #[test]
    fn patterns_that_take_preview_hosts() {
        for pattern in [
            "*.uat.example.com",
            "*.UAT.Example.com",
            "k7mqz2hd9rtw4xcp.uat.example.com",
            "tt-*.uat.example.com",
            "?.uat.example.com",
            "*",
            "*.com",
            "*example.com",
            "*.uat.example.co?",
            "*.*.example.com",
        ] {
            assert!(may_match_preview_host(pattern, SUFFIX), "{pattern}");
        }
    }

    #[test]
    fn patterns_that_do_not() {
        for pattern in [
            "uat.example.com",
            "*.other.com",
            "app.example.com",
            "*.uat.example.com.au",
            "a.b.example.org",
            "?uat.example.com",
            "*.uat.example",
            "a_b.uat.example.com",
            "",
        ] {
            assert!(!may_match_preview_host(pattern, SUFFIX), "{pattern}");
        }
    }

    #[test]
    fn the_wildcard_is_recognised_in_any_case() {
        assert!(is_wildcard("*.UAT.example.com", SUFFIX));
        assert!(!is_wildcard("x.uat.example.com", SUFFIX));
        assert_eq!(wildcard(SUFFIX), "*.uat.example.com");
    }
}
