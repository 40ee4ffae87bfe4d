//! The three plan formats: text, markdown, json.
