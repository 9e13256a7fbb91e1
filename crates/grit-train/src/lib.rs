//! grit-train
