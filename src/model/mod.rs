//! (stage: model) — being built.
