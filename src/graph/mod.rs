//! (stage: graph) — being built.
