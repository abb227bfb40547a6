//! How the fake GitHub classifies a request's credential: shared by its REST API and its git
//! hosting, so neither module depends on the other for it.

/// Which credential a request carried, as the fake classified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthKind {
    /// No `Authorization` header, or a credential the fake does not know.
    None,
    /// Something shaped like a JWT (whether or not it verified).
    Jwt,
    /// An installation token the fake issued (possibly expired by now).
    Installation(String),
    /// A token registered with [`crate::github::FakeGitHub::add_personal_token`].
    Personal,
    /// A user token of the web flow (see [`crate::github::FakeGitHub::sign_in_browser`]), of this login.
    User(String),
}
