//! How the verifier reads request headers without depending on any HTTP framework.

/// Read access to one request's headers.
///
/// Implementations match `name` ASCII case-insensitively (the verifier always asks in lowercase)
/// and return `None` for a header that is absent or whose value is not valid visible ASCII.
/// When a header occurs more than once, return the first occurrence.
///
/// Any `Fn(&str) -> Option<&str>` closure is a `HeaderSource`, so the HTTP layer can pass e.g.
/// `&|name: &str| request.headers().get(name).and_then(|value| value.to_str().ok())`
/// (actix-web's and `http`'s `HeaderMap::get` already match names case-insensitively).
pub trait HeaderSource<'h> {
    fn header(&self, name: &str) -> Option<&'h str>;
}

impl<'h, F> HeaderSource<'h> for F
where
    F: Fn(&str) -> Option<&'h str>,
{
    fn header(&self, name: &str) -> Option<&'h str> {
        self(name)
    }
}

/// Headers as a list of `(name, value)` pairs, for tests and for callers that already hold them
/// that way.
#[derive(Debug, Clone, Copy)]
pub struct HeaderPairs<'h>(pub &'h [(&'h str, &'h str)]);

impl<'h> HeaderSource<'h> for HeaderPairs<'h> {
    fn header(&self, name: &str) -> Option<&'h str> {
        self.0
            .iter()
            .find(|(candidate, _)| candidate.eq_ignore_ascii_case(name))
            .map(|(_, value)| *value)
    }
}
