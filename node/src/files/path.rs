//! File paths as directives name them: absolute, normalized lexically, refused outright when they
//! climb (`..`) or are malformed, so no layer ever reasons about a path that could mean two places.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest path accepted, in bytes.
pub const MAX_PATH_LEN: usize = 4096;
/// Most components in a path.
pub const MAX_DEPTH: usize = 64;
/// Longest single name, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// An absolute path without `.`, `..` or empty components.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FsPath {
    parts: Vec<String>,
}

/// Why a path string is not a usable path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// Not starting at `/`.
    #[error("{0:?} is not an absolute path; give the full path, starting with /")]
    Relative(String),
    /// A `..` component.
    #[error("{0:?} climbs with '..'; give the path without it")]
    Climbs(String),
    /// Too long, too deep, a name too long, or a NUL byte.
    #[error("{0:?} is malformed: {1}")]
    Malformed(String, &'static str),
}

impl FsPath {
    /// Parses and normalizes `text`.
    pub fn parse(text: &str) -> Result<FsPath, PathError> {
        if text.len() > MAX_PATH_LEN {
            return Err(PathError::Malformed(shorten(text), "longer than 4096 bytes"));
        }
        if text.contains('\0') {
            return Err(PathError::Malformed(shorten(text), "contains a NUL byte"));
        }
        if !text.starts_with('/') {
            return Err(PathError::Relative(shorten(text)));
        }
        let mut parts = Vec::new();
        for part in text.split('/') {
            match part {
                "" | "." => {}
                ".." => return Err(PathError::Climbs(shorten(text))),
                name if name.len() > MAX_NAME_LEN => {
                    return Err(PathError::Malformed(shorten(text), "a name is longer than 255 bytes"));
                }
                name => parts.push(name.to_string()),
            }
        }
        if parts.len() > MAX_DEPTH {
            return Err(PathError::Malformed(shorten(text), "more than 64 components"));
        }
        Ok(FsPath { parts })
    }

    /// Its components, from the top.
    pub fn parts(&self) -> &[String] {
        &self.parts
    }

    /// The components below `root`, if this path is `root` or inside it (by whole components:
    /// `/a/bc` is not inside `/a/b`).
    pub fn below(&self, root: &FsPath) -> Option<&[String]> {
        self.parts.strip_prefix(root.parts.as_slice())
    }

    /// Whether this path is `root` or inside it.
    pub fn is_within(&self, root: &FsPath) -> bool {
        self.below(root).is_some()
    }

    /// The path of an entry `name` in this directory.
    pub fn join(&self, name: &str) -> Result<FsPath, PathError> {
        FsPath::parse(&format!("{self}/{name}"))
    }

    /// The last component (empty for `/`).
    pub fn name(&self) -> &str {
        self.parts.last().map(String::as_str).unwrap_or("")
    }
}

impl fmt::Display for FsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.parts.is_empty() {
            return f.write_str("/");
        }
        for part in &self.parts {
            write!(f, "/{part}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for FsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FsPath({self})")
    }
}

impl TryFrom<String> for FsPath {
    type Error = PathError;

    fn try_from(text: String) -> Result<FsPath, PathError> {
        FsPath::parse(&text)
    }
}

impl From<FsPath> for String {
    fn from(path: FsPath) -> String {
        path.to_string()
    }
}

/// Whether `name` is a single plain component (for rename).
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0')
        && name.len() <= MAX_NAME_LEN
}

fn shorten(text: &str) -> String {
    let mut end = text.len().min(120);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalize_and_refuse_climbing() {
        assert_eq!(FsPath::parse("/a//b/./c/").unwrap().to_string(), "/a/b/c");
        assert_eq!(FsPath::parse("/").unwrap().to_string(), "/");
        assert!(matches!(FsPath::parse("a/b"), Err(PathError::Relative(_))));
        assert!(matches!(FsPath::parse("/a/../etc"), Err(PathError::Climbs(_))));
        assert!(matches!(FsPath::parse("/a/.."), Err(PathError::Climbs(_))));
        assert!(matches!(FsPath::parse("/a\0b"), Err(PathError::Malformed(..))));
        assert!(matches!(FsPath::parse(&format!("/{}", "x".repeat(256))), Err(PathError::Malformed(..))));
        assert!(matches!(FsPath::parse(&"/x".repeat(65)), Err(PathError::Malformed(..))));
    }

    #[test]
    fn containment_is_by_whole_components() {
        let root = FsPath::parse("/home/ann/work").unwrap();
        let inside = FsPath::parse("/home/ann/work/notes/a.txt").unwrap();
        assert_eq!(inside.below(&root).unwrap(), ["notes".to_string(), "a.txt".to_string()]);
        assert!(root.is_within(&root));
        assert!(!FsPath::parse("/home/ann/workshop").unwrap().is_within(&root));
        assert!(!FsPath::parse("/home/ann").unwrap().is_within(&root));
    }

    #[test]
    fn plain_names_are_single_components() {
        assert!(is_plain_name("report.md"));
        for bad in ["", ".", "..", "a/b", "a\0"] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
    }
}
