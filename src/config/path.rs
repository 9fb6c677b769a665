//! Paths that name a place in the configuration, such as `triggers[0].delivery.timeout`.
//!
//! The same spelling is produced while reading the YAML and while deserializing, so a path found
//! by either side can be looked up in the positions recorded by the other.

/// `base.key`, or `base["key"]` when the key would be ambiguous after a dot.
pub(super) fn join_key(base: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-');
    match (base.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (false, true) => format!("{base}.{key}"),
        (_, false) => format!("{base}[{key:?}]"),
    }
}

/// `base[index]`.
pub(super) fn join_index(base: &str, index: usize) -> String {
    format!("{base}[{index}]")
}

/// The path one level up, or `None` at the top.
pub(super) fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    // A quoted key may itself contain dots or brackets; cutting inside it only yields a path
    // that is not found, and the caller simply goes up again.
    Some(path.rfind(['.', '[']).map_or("", |cut| &path[..cut]))
}
