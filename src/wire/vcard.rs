//! vCard (being written).
