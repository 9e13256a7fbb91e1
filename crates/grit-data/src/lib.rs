//! grit-data
