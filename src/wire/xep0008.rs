//! XEP-0008 (being written).
