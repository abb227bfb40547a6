//! What model tokens cost, per million, by model name prefix (`MODEL_PRICES` overrides).
//!
//! The defaults are Anthropic's list prices for the Messages API (input, output; a cache write
//! costs 1.25 × input, a cache read 0.1 × input). A model no entry names is priced as the most
//! expensive entry: an unknown model may be over-counted, never under-counted.

use super::Usage;

/// The price of one model, in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
}

impl Price {
    /// The cost of `u`.
    pub fn cost(&self, u: &Usage) -> f64 {
        let per = 1e-6;
        (u.input_tokens as f64 * self.input
            + u.output_tokens as f64 * self.output
            + u.cache_creation_tokens as f64 * self.input * 1.25
            + u.cache_read_tokens as f64 * self.input * 0.1)
            * per
    }
}

/// Default prices by model name prefix; the longest matching prefix wins.
pub const DEFAULT_PRICES: &[(&str, Price)] = &[
    (
        "claude-opus-4-2",
        Price {
            input: 15.0,
            output: 75.0,
        },
    ),
    (
        "claude-opus-4-1",
        Price {
            input: 15.0,
            output: 75.0,
        },
    ),
    (
        "claude-3-opus",
        Price {
            input: 15.0,
            output: 75.0,
        },
    ),
    (
        "claude-opus",
        Price {
            input: 5.0,
            output: 25.0,
        },
    ),
    (
        "claude-sonnet",
        Price {
            input: 3.0,
            output: 15.0,
        },
    ),
    (
        "claude-3-7-sonnet",
        Price {
            input: 3.0,
            output: 15.0,
        },
    ),
    (
        "claude-3-5-sonnet",
        Price {
            input: 3.0,
            output: 15.0,
        },
    ),
    (
        "claude-haiku",
        Price {
            input: 1.0,
            output: 5.0,
        },
    ),
    (
        "claude-3-5-haiku",
        Price {
            input: 0.8,
            output: 4.0,
        },
    ),
];

/// A price table.
#[derive(Debug, Clone, PartialEq)]
pub struct Prices {
    entries: Vec<(String, Price)>,
}

/// A `MODEL_PRICES` entry that does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{entry:?} is not <model prefix>=<input>/<output> (US dollars per million tokens)")]
pub struct PriceError {
    pub entry: String,
}

impl Default for Prices {
    fn default() -> Self {
        Self {
            entries: DEFAULT_PRICES
                .iter()
                .map(|(p, price)| ((*p).to_owned(), *price))
                .collect(),
        }
    }
}

impl Prices {
    /// The defaults with `spec`'s entries on top: `prefix=input/output,…`, e.g.
    /// `claude-opus=5/25,my-proxy-model=1/2`.
    pub fn parse(spec: &str) -> Result<Self, PriceError> {
        let mut prices = Self::default();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = || PriceError {
                entry: entry.to_owned(),
            };
            let (prefix, rest) = entry.split_once('=').ok_or_else(bad)?;
            let (input, output) = rest.split_once('/').ok_or_else(bad)?;
            let num = |s: &str| {
                s.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(bad)
            };
            let price = Price {
                input: num(input)?,
                output: num(output)?,
            };
            let prefix = prefix.trim();
            if prefix.is_empty() {
                return Err(bad());
            }
            prices.entries.retain(|(p, _)| p != prefix);
            prices.entries.push((prefix.to_owned(), price));
        }
        Ok(prices)
    }

    /// The price of `model`: the longest matching prefix, else the most expensive entry.
    pub fn of(&self, model: &str) -> Price {
        self.entries
            .iter()
            .filter(|(p, _)| model.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, price)| *price)
            .unwrap_or_else(|| self.most_expensive())
    }

    fn most_expensive(&self) -> Price {
        self.entries.iter().map(|(_, p)| *p).fold(
            Price {
                input: 0.0,
                output: 0.0,
            },
            |a, b| {
                if b.output > a.output { b } else { a }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_prefix_wins_and_unknown_models_cost_the_most() {
        let p = Prices::default();
        assert_eq!(p.of("claude-opus-4-1-20250805").output, 75.0);
        assert_eq!(p.of("claude-opus-4-5-20251101").output, 25.0);
        assert_eq!(p.of("claude-sonnet-4-5").input, 3.0);
        assert_eq!(p.of("claude-3-5-haiku-latest").input, 0.8);
        assert_eq!(p.of("claude-haiku-4-5").input, 1.0);
        assert_eq!(p.of("something-else").output, 75.0);
    }

    #[test]
    fn overrides_replace_or_add_entries_and_bad_ones_are_named() {
        let p = Prices::parse("claude-opus=1/2, house-model=0.5/0.5").unwrap();
        assert_eq!(
            p.of("claude-opus-5"),
            Price {
                input: 1.0,
                output: 2.0
            }
        );
        assert_eq!(p.of("house-model-x").input, 0.5);
        for bad in ["claude-opus", "x=1", "=1/2", "x=a/2", "x=-1/2"] {
            assert_eq!(Prices::parse(bad).unwrap_err().entry, bad.trim(), "{bad}");
        }
    }

    #[test]
    fn cost_counts_every_kind_of_token() {
        let price = Price {
            input: 3.0,
            output: 15.0,
        };
        let u = Usage {
            input_tokens: 1_000_000,
            output_tokens: 100_000,
            cache_creation_tokens: 1_000_000,
            cache_read_tokens: 1_000_000,
            ..Usage::default()
        };
        let cost = price.cost(&u);
        assert!((cost - (3.0 + 1.5 + 3.75 + 0.3)).abs() < 1e-9, "{cost}");
    }
}
