//! (stage: planfile) — being built.
