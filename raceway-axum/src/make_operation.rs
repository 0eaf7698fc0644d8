//! Naming the server span.

use http::Method;

/// Produces the operation name of a request's server span from its method, matched route (if known) and path.
pub trait MakeOperation {
    /// The operation name, e.g. `GET /users/{id}`.
    fn make_operation(&self, method: &Method, route: Option<&str>, path: &str) -> String;
}

/// `"{METHOD} {route}"`, or `"{METHOD} {path}"` when no route is known.
///
/// ```
/// use raceway_axum::{DefaultMakeOperation, MakeOperation};
/// let op = DefaultMakeOperation.make_operation(&http::Method::GET, Some("/users/{id}"), "/users/7");
/// assert_eq!(op, "GET /users/{id}");
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultMakeOperation;

impl MakeOperation for DefaultMakeOperation {
    fn make_operation(&self, method: &Method, route: Option<&str>, path: &str) -> String {
        let target = route.unwrap_or(path);
        let mut op = String::with_capacity(method.as_str().len() + 1 + target.len());
        op.push_str(method.as_str());
        op.push(' ');
        op.push_str(target);
        op
    }
}

impl<F> MakeOperation for F
where
    F: Fn(&Method, Option<&str>, &str) -> String,
{
    fn make_operation(&self, method: &Method, route: Option<&str>, path: &str) -> String {
        self(method, route, path)
    }
}
