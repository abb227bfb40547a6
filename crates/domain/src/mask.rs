//! Masking of known secret values in text that leaves the system (comments, logs, replies).

/// Shortest value masked: shorter strings would mask ordinary words, and no real credential is
/// this short.
const MIN_SECRET_LEN: usize = 8;

/// Replaces every occurrence of known secret values with `***`.
#[derive(Clone, Default)]
pub struct Masker {
    secrets: Vec<String>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker")
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

impl Masker {
    /// Adds a value to mask (ignored when too short to be a credential).
    pub fn add(&mut self, secret: &str) {
        let s = secret.trim();
        if s.len() >= MIN_SECRET_LEN && !self.secrets.iter().any(|k| k == s) {
            self.secrets.push(s.to_owned());
            // Longest first, so a secret containing another is masked whole.
            self.secrets.sort_by_key(|k| std::cmp::Reverse(k.len()));
        }
    }

    /// `text` with every known secret replaced.
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_known_values_only() {
        let mut m = Masker::default();
        m.add("ghs_abcdefghijkl");
        m.add("short");
        assert_eq!(
            m.mask("token ghs_abcdefghijkl and short"),
            "token *** and short"
        );
        assert_eq!(m.mask("nothing"), "nothing");
    }
}
