//! raceway core
