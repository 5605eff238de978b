//! SKELETON — the REST convention path parser and singularizer.
