//! XEP-0084 (being written).
