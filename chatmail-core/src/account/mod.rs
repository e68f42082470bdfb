//! Accounts: validation, password hashes, creation on first login, last login, device tokens.
