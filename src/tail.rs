//! SKELETON — `syncgate tail`.
