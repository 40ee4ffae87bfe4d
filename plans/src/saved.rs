//! Saved plans (`mesh plan --out FILE`).
