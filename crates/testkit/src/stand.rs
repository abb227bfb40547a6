//! What a test does when a part of the stand is missing (the AWS emulator, the Claude Code CLI,
//! the recorded payloads, a browser): outside the test command it skips with a message, so a
//! developer can run one crate's tests without the whole stand; under `scripts/test.sh`, which
//! provides every part and sets `CCA_REQUIRE_STAND=1`, it fails, so no test of `.ci/run` can
//! pass by not running.

use std::fmt::Display;

/// The variable `scripts/test.sh` sets.
pub const REQUIRE_VAR: &str = "CCA_REQUIRE_STAND";

/// Whether every part of the stand must be there.
pub fn required() -> bool {
    std::env::var_os(REQUIRE_VAR).is_some_and(|v| v == "1")
}

/// Skips (prints why) or, when the stand is required, fails the test.
///
/// # Panics
/// When [`required`] is true.
pub fn skip(reason: impl Display) {
    assert!(
        !required(),
        "{reason}, but {REQUIRE_VAR}=1: the test command must provide it"
    );
    eprintln!("skipped: {reason}");
}
