//! grit-nn
