//! kubesim: see README.md beside this crate.
