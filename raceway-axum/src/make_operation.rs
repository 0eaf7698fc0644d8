//! Naming the server span.

use http::Method;

/// Produces the operation name of a request's server span from its method, matched route (if known) and path.
pub trait MakeOperation {
    /// The operation name, e.g. `GET /users/{id}`.
    fn make_operation(&self, method: &Method, route: Option<&str>, path: &str) -> String;

    /// Appends the operation name to `out`. The middleware calls this with a reused buffer; override it when the
    /// name can be written without building a `String` first.
    ///
    /// ```
    /// use raceway_axum::MakeOperation;
    /// let custom = |method: &http::Method, _route: Option<&str>, path: &str| format!("{method} {path}!");
    /// let mut out = String::from("kept ");
    /// custom.write_operation(&http::Method::PUT, None, "/x", &mut out);
    /// assert_eq!(out, "kept PUT /x!");
    /// ```
    fn write_operation(&self, method: &Method, route: Option<&str>, path: &str, out: &mut String) {
        out.push_str(&self.make_operation(method, route, path));
    }
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
        let mut op = String::new();
        self.write_operation(method, route, path, &mut op);
        op
    }

    fn write_operation(&self, method: &Method, route: Option<&str>, path: &str, out: &mut String) {
        let target = route.unwrap_or(path);
        out.reserve(method.as_str().len() + 1 + target.len());
        out.push_str(method.as_str());
        out.push(' ');
        out.push_str(target);
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
