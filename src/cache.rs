//! Content-addressed cache (being written).
