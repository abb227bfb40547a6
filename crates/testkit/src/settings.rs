//! Parsing a binary's settings from a given set of variables, for tests that check what a
//! binary requires (see `cca_domain::contract`).
//!
//! Every binary reads its settings with clap, each setting a flag with an environment variable.
//! Tests cannot change their own process environment safely (other tests run beside them), so
//! [`parse_from_vars`] turns each variable into its flag and parses with every environment
//! lookup switched off: the outcome is what the binary would make of an environment holding
//! exactly those variables.

use std::ffi::OsStr;

use clap::builder::Resettable;
use clap::{Args, Command, FromArgMatches};

/// The environment variables of every setting of `T`.
pub fn variables<T: Args>() -> Vec<String> {
    T::augment_args(Command::new("settings"))
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|name| name.to_string_lossy().into_owned())
        .collect()
}

/// `T` as its binary would parse it from an environment holding exactly `vars`.
///
/// Variables that are not settings of `T` are ignored, as the binary ignores them.
pub fn parse_from_vars<T: Args + FromArgMatches>(vars: &[(&str, &str)]) -> Result<T, clap::Error> {
    let command = T::augment_args(Command::new("settings").no_binary_name(true));
    let mut argv = Vec::new();
    for (name, value) in vars {
        let flag = command
            .get_arguments()
            .find(|arg| arg.get_env() == Some(OsStr::new(name)))
            .and_then(|arg| arg.get_long());
        if let Some(flag) = flag {
            argv.push(format!("--{flag}"));
            argv.push((*value).to_owned());
        }
    }
    let matches = command
        .mut_args(|arg| arg.env(Resettable::Reset))
        .try_get_matches_from(argv)?;
    T::from_arg_matches(&matches)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Args)]
    struct Sample {
        #[arg(long, env = "CCA_TESTKIT_SAMPLE_NAME")]
        name: Option<String>,
        #[arg(long = "count", env = "CCA_TESTKIT_SAMPLE_COUNT")]
        number: Option<u32>,
    }

    #[test]
    fn variables_become_flags() {
        let s: Sample =
            parse_from_vars(&[("CCA_TESTKIT_SAMPLE_COUNT", "3"), ("UNRELATED", "x")]).unwrap();
        assert_eq!(s.number, Some(3));
        assert_eq!(s.name, None);
        assert!(parse_from_vars::<Sample>(&[("CCA_TESTKIT_SAMPLE_COUNT", "x")]).is_err());
        assert_eq!(
            variables::<Sample>(),
            ["CCA_TESTKIT_SAMPLE_NAME", "CCA_TESTKIT_SAMPLE_COUNT"]
        );
    }
}
