//! What the tests of this crate share: a GitHub App client of the fake.

use cca_github::{AppCredentials, GitHub, GitHubAuth};
use cca_testkit::github::{APP_ID, FakeGitHub, app_private_key_pem};
use secrecy::SecretString;

/// The App, acting for installation 7 by default, against `fake`.
pub fn app(fake: &FakeGitHub) -> GitHub {
    let creds = AppCredentials::new(
        APP_ID,
        &SecretString::from(app_private_key_pem().to_owned()),
    )
    .unwrap();
    GitHub::new(
        fake.url(),
        GitHubAuth::App {
            app: creds,
            default_installation: Some(7),
        },
    )
    .unwrap()
}
