//! Expiry planning: which messages and accounts the daily clean-up deletes.
